"""The data root and everything stored under it, resolved in one place.

One ``DataLayout`` per run hands out the frame store, the seed-batch registry, the MinHash
signature store, the module library's folder, the LLM cache's location and the dataset folder.
Whoever sets the root (the ``data_root`` resource's config, or a test) moves all of them at
once; nothing else under ``amr_dagster`` decides where data lives.
"""

from __future__ import annotations

import os
from pathlib import Path

from amr_dagster import settings

LLM_CACHE_FILE = "llm_cache.sqlite"


class DataLayout:
    """Folders and stores under one data root (``resolve("")``: ``$AMR_DATA_DIR`` or ``./.amr/data``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = "") -> "DataLayout":
        """``path``, else the deployment's default root (read when called, never at import)."""
        return cls(path if path else settings.data_dir())

    def frames(self):
        from amr_dagster.storage import FrameStore

        return FrameStore(self.root)

    def batches(self):
        from amr_dagster.seeds.batches import BatchRegistry

        return BatchRegistry(self.root)

    def minhash(self):
        from amr_dagster.seeds.dedup import SignatureStore

        return SignatureStore(self.root / "minhash")

    def library_dir(self) -> Path:
        return self.root / "module_library"

    def llm_cache_path(self) -> Path:
        return self.root / LLM_CACHE_FILE

    def dataset_dir(self) -> Path:
        return self.root / "instruction_dataset"

    def __repr__(self) -> str:
        return f"DataLayout({str(self.root)!r})"
