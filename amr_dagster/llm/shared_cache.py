"""The LLM cache shared by machines: one object per finished completion in an object store,
read through a machine-local SQLite cache.

A rerun on another machine repeats no finished call: a lookup asks the local SQLite file first
and fetches the rest from the store (in parallel, one GET per key), keeping what it found
locally; a finished completion is written to both before ``put`` returns. Objects are
``<prefix>/<key[:2]>/<key>.json``; the key is ``cache.cache_key`` (model, prompt, sampling
parameters, sample index), so concurrent writers of the same key write the same answer.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from amr_dagster.llm.base import Completion
from amr_dagster.llm.cache import CacheStore
from amr_dagster.storage.objectstore import ObjectStore


class ObjectStoreCache:
    """Completions as JSON objects; ``local`` (a ``CacheStore``) answers first and keeps copies."""

    def __init__(self, store: ObjectStore, local: CacheStore, max_parallel: int = 16) -> None:
        self.store = store
        self.local = local
        self.max_parallel = max_parallel

    @staticmethod
    def _key(key: str) -> str:
        return f"{key[:2]}/{key}.json"

    def _fetch(self, key: str) -> tuple[str, dict | None]:
        data = self.store.get(self._key(key))
        return key, None if data is None else json.loads(data)

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        found = self.local.get_many(keys)
        missing = [k for k in keys if k not in found]
        if not missing:
            return found
        with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(missing))) as pool:
            fetched = list(pool.map(self._fetch, missing))
        for key, row in fetched:
            if row is None:
                continue
            completion = Completion(
                text=row["text"],
                finish_reason=row["finish_reason"],
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                sample_index=0,
                cached=True,
            )
            self.local.put(key, row["model_id"], completion)
            found[key] = completion
        return found

    def put(self, key: str, model_id: str, completion: Completion) -> None:
        row = {k: v for k, v in asdict(completion).items() if k in ("text", "finish_reason", "prompt_tokens", "completion_tokens")}
        self.store.put(self._key(key), json.dumps({**row, "model_id": model_id}, ensure_ascii=False).encode())
        self.local.put(key, model_id, completion)

    def count(self) -> int:
        return sum(1 for k in self.store.list() if k.endswith(".json"))
