"""The data root as a resource, for assets that read or write beyond their own frame
(the global dedup signature store, the batch registry, the module library)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from amr_dagster import settings
from amr_dagster.seeds.batches import BatchRegistry
from amr_dagster.storage import FrameStore


class DataRoot(dg.ConfigurableResource):
    """``path`` empty means ``$AMR_DATA_DIR`` (default ``./.amr/data``)."""

    path: str = ""

    def root(self) -> Path:
        return Path(self.path) if self.path else settings.data_dir()

    def frames(self) -> FrameStore:
        return FrameStore(self.root())

    def batches(self) -> BatchRegistry:
        return BatchRegistry(self.root())
