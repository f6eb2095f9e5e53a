"""The persistent response cache: never pay twice for the same LLM call.

A key is a hash of (model id, prompt or messages, sampling parameters except ``n``, sample
index), so sample ``i`` of a request is one entry and raising ``n`` later reuses the samples
already made. The default store is one SQLite file under the data root in WAL mode: several
processes (Dagster step workers) can read and write it at once, and every completion is
committed on its own as soon as it is finished, so a killed run loses only in-flight calls.

``CacheStore`` is the small protocol a shared store (Redis, a database server) implements
when several machines run; ``MemoryCache`` is the in-process one (tests, throwaway runs).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from amr_dagster.ids import stable_id
from amr_dagster.llm.base import Completion, LLMRequest
from amr_dagster.settings import data_dir

DEFAULT_CACHE_FILE = "llm_cache.sqlite"


def default_cache_path() -> Path:
    """``<data root>/llm_cache.sqlite``: the cache lives next to the data it produced."""
    return data_dir() / DEFAULT_CACHE_FILE


def cache_key(model_id: str, request: LLMRequest, sample_index: int) -> str:
    """Stable key of one sample. ``request.params.seed`` is the request's base seed."""
    p = request.params
    payload = json.dumps(
        {
            "model": model_id,
            "prompt": request.prompt,
            "messages": [list(m) for m in request.messages] if request.messages is not None else None,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
            "stop": list(p.stop),
            "seed": p.seed,
            "sample": sample_index,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return stable_id("llm-cache-v1", payload, length=32)


class CacheStore(Protocol):
    """Where finished completions live. ``put`` must be durable when it returns."""

    def get_many(self, keys: list[str]) -> dict[str, Completion]: ...

    def put(self, key: str, model_id: str, completion: Completion) -> None: ...


class MemoryCache:
    """A dict; for tests and throwaway runs."""

    def __init__(self) -> None:
        self._rows: dict[str, Completion] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        with self._lock:
            return {k: self._rows[k] for k in keys if k in self._rows}

    def put(self, key: str, model_id: str, completion: Completion) -> None:
        with self._lock:
            self._rows[key] = completion

    def __len__(self) -> int:
        return len(self._rows)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL
)
"""


class SQLiteCache:
    """One SQLite file in WAL mode, one short transaction per completion.

    Safe across processes (SQLite's file locking, a busy timeout for writers that collide) and
    across threads (one connection guarded by a lock). ``synchronous=NORMAL`` in WAL mode keeps
    every committed row across a killed process; only a power loss can drop the last commits.
    """

    def __init__(self, path: str | Path | None = None, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
        )
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # stay under SQLite's bound-variable limit
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    "SELECT key, text, finish_reason, prompt_tokens, completion_tokens "
                    f"FROM completions WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, text, finish, ptok, ctok in rows:
                    found[key] = Completion(
                        text=text,
                        finish_reason=finish,
                        prompt_tokens=ptok,
                        completion_tokens=ctok,
                        sample_index=0,
                        cached=True,
                    )
        return found

    def put(self, key: str, model_id: str, completion: Completion) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model_id,
                    completion.text,
                    completion.finish_reason,
                    completion.prompt_tokens,
                    completion.completion_tokens,
                    time.time(),
                ),
            )

    def count(self, model_id: str | None = None) -> int:
        with self._lock:
            if model_id is None:
                return self._conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
            return self._conn.execute(
                "SELECT COUNT(*) FROM completions WHERE model_id = ?", (model_id,)
            ).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
