"""The data root's shared, ordered state (the MinHash signature store, the module library, the export's state) for
one machine or many.

On a local data root the stores work in their folders under it, serialised by their own file
locks, exactly as before. On an ``s3://`` data root each is a ``SharedFolder``: a commit log in
S3 worked on in a machine-local copy under ``settings.cache_dir()``, so two workers that share
no disk commit one after the other and a loser redoes its work on the winner's state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

from amr_dagster import settings
from amr_dagster.ids import stable_id
from amr_dagster.storage.objectstore import is_s3, open_store
from amr_dagster.storage.shared_folder import SharedFolder

T = TypeVar("T")

MINHASH = "minhash"
MODULE_LIBRARY = "module_library"
EXPORT_STATE = "export_state"


class SharedState:
    """Named shared folders of one data root (``settings.data_root()`` when None)."""

    def __init__(self, data_root: str | None = None, client_factory: Callable[[], Any] | None = None, cache: Path | None = None) -> None:
        self.data_root = str(data_root or settings.data_root())
        self._client_factory = client_factory
        self._cache = cache

    @property
    def shared(self) -> bool:
        """True when the state lives in object storage (several machines may write it)."""
        return is_s3(self.data_root)

    def folder(self, name: str) -> SharedFolder:
        """The commit-log folder ``name`` of an S3 data root with this machine's copy of it."""
        store = open_store(self.data_root, self._client_factory).child(name)
        cache = self._cache or settings.cache_dir() / "shared"
        return SharedFolder(store, cache / f"{name}-{stable_id(store.url, length=12)}")

    def read(self, name: str) -> Path:
        """A local folder holding the latest committed state of ``name``, for reading."""
        if not self.shared:
            return Path(self.data_root) / name
        return self.folder(name).checkout()

    def update(self, name: str, work: Callable[[Path], T]) -> T:
        """Run ``work`` on the state folder and publish its changes as one ordered commit.

        Locally ``work`` runs once on the folder under the data root (the stores lock
        themselves). On S3 it may run more than once: after another worker's commit it is
        redone on the new state, so it must be a function of the folder's content.
        """
        if not self.shared:
            return work(Path(self.data_root) / name)
        return self.folder(name).update(work)
