"""The data root as a resource, for assets that read or write beyond their own frame
(the global dedup signature store, the batch registry, the module library, the export).

``path`` is a local folder or ``s3://bucket/prefix``; S3 goes through dagster-aws
(``resources/s3.py``)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from amr_dagster import settings
from amr_dagster.objectstore import ObjectStore, is_s3, open_store
from amr_dagster.seeds.batches import BatchRegistry
from amr_dagster.shared_state import SharedState
from amr_dagster.storage import FrameStore
from resources.s3 import client_factory


class DataRoot(dg.ConfigurableResource):
    """``path`` empty means ``$AMR_DATA_DIR`` (default ``./.amr/data``)."""

    path: str = ""

    def url(self) -> str:
        return self.path or settings.data_root()

    def root(self) -> Path:
        """The root as a local folder (raises for an S3 root: use ``objects()``)."""
        if is_s3(self.url()):
            raise ValueError(f"the data root {self.url()} is in S3, not a local folder")
        return Path(self.url())

    def objects(self) -> ObjectStore:
        return open_store(self.url(), client_factory())

    def frames(self) -> FrameStore:
        return FrameStore(self.objects())

    def batches(self) -> BatchRegistry:
        return BatchRegistry(self.objects())

    def shared_state(self) -> SharedState:
        """The MinHash store and the module library: local folders, or S3 commit logs."""
        return SharedState(self.url(), client_factory())
