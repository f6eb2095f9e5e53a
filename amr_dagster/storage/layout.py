"""The data root and everything stored under it, resolved in one place.

One ``DataLayout`` per run hands out the frame store, the seed-batch registry, the shared state
(MinHash signature store, module library), the LLM cache's location and the dataset folder.
Whoever sets the root (the ``data_root`` resource's config, or a test) moves all of them at
once; nothing else under ``amr_dagster`` decides where data lives.

The root is a local folder or ``s3://bucket/prefix``. On S3 every object goes through
``objectstore`` and the shared, ordered state through commit logs (``shared_state``), so
workers that share no disk stay exact.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

from amr_dagster import settings
from amr_dagster.storage.objectstore import ObjectStore, is_s3, join, open_store
from amr_dagster.storage.shared_state import EXPORT_STATE, MINHASH, MODULE_LIBRARY, SharedState

LLM_CACHE_FILE = "llm_cache.sqlite"
DATASET_FOLDER = "instruction_dataset"


def _one_client(factory: Callable[[], Any] | None) -> Callable[[], Any]:
    """``factory`` called once, on first use: every store of one layout (frames, shared state,
    dataset) shares the client (boto3 clients are thread-safe; building one costs ~0.1 s of CPU,
    and a global asset opens a dozen stores)."""
    lock, made = threading.Lock(), []

    def client() -> Any:
        with lock:
            if not made:
                if factory is not None:
                    made.append(factory())
                else:
                    import boto3

                    made.append(boto3.client("s3"))
            return made[0]

    return client


class DataLayout:
    """Stores under one data root (``resolve("")``: ``$AMR_DATA_DIR`` or ``./.amr/data``).

    ``client_factory``: how to get a boto3 S3 client (the Dagster layer passes dagster-aws's);
    None uses boto3's default chain (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).
    """

    def __init__(self, root: str | os.PathLike[str], client_factory: Callable[[], Any] | None = None) -> None:
        self.url = str(root) if is_s3(root) else str(Path(root))
        self._client_factory = _one_client(client_factory) if is_s3(root) else client_factory

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = "", client_factory: Callable[[], Any] | None = None) -> "DataLayout":
        """``path``, else the deployment's default root (read when called, never at import)."""
        return cls(path if path else settings.data_root(), client_factory)

    @property
    def in_s3(self) -> bool:
        return is_s3(self.url)

    @property
    def root(self) -> Path | None:
        """The root as a local folder; None when it is in S3 (use ``objects()``)."""
        return None if self.in_s3 else Path(self.url)

    def objects(self) -> ObjectStore:
        return open_store(self.url, self._client_factory)

    def frames(self):
        from amr_dagster.storage.frames import FrameStore

        return FrameStore(self.objects())

    def batches(self):
        from amr_dagster.seeds.batches import BatchRegistry

        return BatchRegistry(self.objects())

    def shared_state(self) -> SharedState:
        """The MinHash store and the module library: local folders, or S3 commit logs."""
        return SharedState(self.url, self._client_factory)

    def update_minhash(self, work):
        """Run ``work(folder)`` on the MinHash store and publish it as one ordered commit."""
        return self.shared_state().update(MINHASH, work)

    def update_library(self, work):
        """Run ``work(folder)`` on the module library and publish it as one ordered commit."""
        return self.shared_state().update(MODULE_LIBRARY, work)

    def update_export_state(self, work):
        """Run ``work(folder)`` on the export's state and publish it as one ordered commit."""
        return self.shared_state().update(EXPORT_STATE, work)

    def arrival_order(self) -> list[str]:
        """Seed batches in the order seed dedup first saw them (the MinHash store's ledger): the
        order the global assets add new batches in, however many arrive per run."""
        from amr_dagster.seeds.dedup import SignatureStore

        return SignatureStore(self.shared_state().read(MINHASH)).batches()

    def library_dir(self) -> Path:
        """A local folder holding the library's latest committed state (for reading)."""
        return self.shared_state().read(MODULE_LIBRARY)

    def llm_cache_path(self) -> str:
        """``<root>/llm_cache.sqlite``; on S3 the prefix ``<root>/llm_cache`` (one object per call)."""
        return join(self.url, "llm_cache") if self.in_s3 else str(Path(self.url) / LLM_CACHE_FILE)

    def dataset_store(self) -> ObjectStore:
        return self.objects().child(DATASET_FOLDER)

    def __repr__(self) -> str:
        return f"DataLayout({self.url!r})"
