"""A folder shared by workers that share no disk: a commit log in an object store, worked on in
a private local copy.

Stores written for a local folder (the MinHash signature store, the module library) keep their
code: each worker runs them on its own copy of the folder, and a *transaction* publishes what
changed as one numbered entry of a commit log. Entry ``n`` is created with a conditional write
(S3 ``IfNoneMatch="*"``; a hard link on a local folder), so of two workers that both saw entry
``n - 1`` exactly one commits ``n``. The other restores its copy, applies the winner's entry and
redoes its work on top of it: the state is always the result of applying the transactions one
after another in log order, as if a lock had serialised them, with no lock held across machines.

Object layout under the store: ``log/<n:010d>.json`` (``{"files": {path: sha256 | null}}``,
the paths a transaction wrote or deleted) and ``blobs/<sha256>`` (file contents, immutable).
A blob is uploaded before the entry naming it, so every committed entry is complete. Locally:
the copy under ``local`` plus ``.shared-state.json`` (last applied entry, the committed hash of
every path); a ``fcntl`` lock on the *local* disk serialises processes of one machine sharing
the copy. Names starting with a dot are local-only (locks, temp files) and never published.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from amr_dagster.storage.objectstore import LocalObjectStore, ObjectStore, download

T = TypeVar("T")
STATE = ".shared-state.json"
LOCK = ".shared.lock"


class CommitConflict(RuntimeError):
    """Another worker committed first; the local copy was restored, redo the work."""


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _entry_key(number: int) -> str:
    return f"log/{number:010d}.json"


def _blob_key(sha: str) -> str:
    return f"blobs/{sha[:2]}/{sha}"


def _record(state: dict[str, Any], number: int, files: dict[str, str | None]) -> None:
    """Note in ``state`` that entry ``number`` (these path -> sha changes) is applied locally."""
    for path, sha in files.items():
        if sha is None:
            state["files"].pop(path, None)
        else:
            state["files"][path] = sha
    state["applied"] = number


class SharedFolder:
    """``store``: where the log and blobs live; ``local``: this worker's copy of the folder."""

    def __init__(self, store: ObjectStore, local: str | os.PathLike[str]) -> None:
        self.store = store
        self.local = Path(local)
        self._files = LocalObjectStore(self.local)

    # ------------------------------------------------------------------ local state

    def _state(self) -> dict[str, Any]:
        path = self.local / STATE
        return json.loads(path.read_text()) if path.is_file() else {"applied": 0, "files": {}}

    def _save_state(self, state: dict[str, Any]) -> None:
        self._files.put(STATE, json.dumps(state, sort_keys=True).encode())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.local.mkdir(parents=True, exist_ok=True)
        with open(self.local / LOCK, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _scan(self) -> dict[str, str]:
        """path -> sha256 of every publishable file in the local copy."""
        return {key: _sha256(self.local / key) for key in self._files.list()}

    def _place(self, path: str, sha: str | None) -> None:
        """Make the local ``path`` hold blob ``sha`` (or not exist, for None)."""
        target = self.local / path
        if sha is None:
            target.unlink(missing_ok=True)
        elif not target.is_file() or _sha256(target) != sha:
            download(self.store, _blob_key(sha), target)

    def _pull(self, state: dict[str, Any]) -> dict[str, Any]:
        """Apply every log entry after the last applied one, in order."""
        after = _entry_key(state["applied"]) if state["applied"] else ""
        for key in self.store.list("log", start_after=after):
            number = int(key[len("log/"):-len(".json")])
            if number != state["applied"] + 1:
                raise RuntimeError(f"{self.store.uri('log')}: entry {number} follows {state['applied']} (a gap)")
            entry = json.loads(self.store.get(key) or b"{}")
            for path, sha in entry["files"].items():
                self._place(path, sha)
            _record(state, number, entry["files"])
        self._save_state(state)
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        """Undo uncommitted local changes: every path back to its committed content."""
        now = self._scan()
        for path in set(now) | set(state["files"]):
            if now.get(path) != state["files"].get(path):
                self._place(path, state["files"].get(path))

    # ------------------------------------------------------------------ API

    def checkout(self) -> Path:
        """Bring the local copy up to the latest commit; returns its path (for reading)."""
        with self._locked():
            state = self._state()
            self._restore(state)
            self._pull(state)
        return self.local

    @contextmanager
    def transaction(self) -> Iterator[Path]:
        """Yield the up-to-date local copy; on exit publish what changed as the next entry.

        Raises ``CommitConflict`` (copy restored) when another worker committed first; any
        error inside the block also restores the copy, so a failed attempt leaves no trace.
        """
        with self._locked():
            state = self._pull(self._state())
            self._restore(state)
            try:
                yield self.local
                self._publish(state)
            except BaseException:
                self._restore(state)
                raise

    def _publish(self, state: dict[str, Any]) -> None:
        now = self._scan()
        changes: dict[str, str | None] = {p: s for p, s in now.items() if state["files"].get(p) != s}
        changes.update({p: None for p in state["files"] if p not in now})
        if not changes:
            return
        for path, sha in changes.items():
            if sha is not None and not self.store.exists(_blob_key(sha)):
                self.store.put(_blob_key(sha), (self.local / path).read_bytes())
        number = state["applied"] + 1
        body = json.dumps({"files": changes, "committed_at": time.time()}, sort_keys=True).encode()
        if not self.store.create(_entry_key(number), body):
            raise CommitConflict(f"{self.store.uri(_entry_key(number))} was committed by another worker")
        _record(state, number, changes)
        self._save_state(state)

    def update(self, work: Callable[[Path], T], attempts: int = 20) -> T:
        """Run ``work`` on the up-to-date copy and commit it, redoing it after each conflict."""
        for attempt in range(attempts):
            try:
                with self.transaction() as folder:
                    return work(folder)
            except CommitConflict:
                time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        raise CommitConflict(f"{self.store.uri()}: no commit after {attempts} attempts (too much contention)")

    def entries(self) -> int:
        """How many transactions the log holds."""
        return len(self.store.list("log"))
