"""``CachedEngine``: the engine every stage calls (cache in front, accounting around).

For a batch it splits every request into its samples, answers what the cache holds, sends only
the misses to the backend in one batch (so the backend can order, batch and reuse prefixes),
and commits each finished sample to the cache the moment the backend reports it. Every
completion it returns carries the engine's ``ModelIdentity`` (engine, model, checkpoint
checksum, whether seeds were honoured) for the rows' lineage; the cache key's model id names
the same weights, so a hit carries the identity of the engine that made it. Usage
(requests, tokens, hits, misses, wall time) accumulates until ``reset_usage()``; a stage takes
``snapshot()`` at the start of a materialization and ``usage_since(snapshot)`` at its end.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Iterator, Sequence

from amr_dagster.llm.base import (
    Completion,
    LLMEngine,
    LLMRequest,
    Stopwatch,
    Usage,
    identity_of,
    per_sample,
)
from amr_dagster import progress
from amr_dagster.llm.cache import CacheStore, cache_key


class CachedEngine:
    """Wraps a backend with the persistent cache; itself an ``LLMEngine``."""

    def __init__(self, engine: LLMEngine, cache: CacheStore) -> None:
        self.engine = engine
        self.cache = cache
        self.model_id = engine.model_id
        self.identity = identity_of(engine)
        self._usage = Usage(model_id=engine.model_id)
        self._lock = threading.Lock()

    # -- accounting -------------------------------------------------------------------------
    @property
    def usage(self) -> Usage:
        """Everything since construction or the last ``reset_usage()`` (a copy)."""
        with self._lock:
            return self._usage.copy()

    def reset_usage(self) -> Usage:
        """Start a new accounting period; returns the finished one."""
        with self._lock:
            done, self._usage = self._usage, Usage(model_id=self.model_id)
        return done

    def snapshot(self) -> Usage:
        return self.usage

    def usage_since(self, snapshot: Usage) -> Usage:
        """Usage accrued after ``snapshot`` (safe when two stages share one engine in a process)."""
        now = self.usage
        return Usage(
            requests=now.requests - snapshot.requests,
            prompt_tokens=now.prompt_tokens - snapshot.prompt_tokens,
            completion_tokens=now.completion_tokens - snapshot.completion_tokens,
            cache_hits=now.cache_hits - snapshot.cache_hits,
            cache_misses=now.cache_misses - snapshot.cache_misses,
            errors=now.errors - snapshot.errors,
            wall_s=now.wall_s - snapshot.wall_s,
            model_id=self.model_id,
        )

    # -- generation -------------------------------------------------------------------------
    def generate(self, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
        """``params.n`` completions per request, in order; cached ones have ``cached=True``."""
        with Stopwatch() as clock:
            out: list[list[Completion | None]] = [[None] * r.params.n for r in requests]
            keys = [
                [cache_key(self.model_id, r, i) for i in range(r.params.n)] for r in requests
            ]
            found = self.cache.get_many(sorted({k for row in keys for k in row}))

            # One backend call per distinct missing sample; duplicates in the batch share it.
            missing: dict[str, tuple[LLMRequest, list[tuple[int, int]]]] = {}
            hits = 0
            for ri, request in enumerate(requests):
                singles = None
                for si, key in enumerate(keys[ri]):
                    if key in found:
                        out[ri][si] = replace(found[key], sample_index=si, cached=True, identity=self.identity)
                        hits += 1
                    elif key in missing:
                        missing[key][1].append((ri, si))
                    else:
                        singles = singles or per_sample(request)
                        missing[key] = (singles[si], [(ri, si)])

            order = list(missing)
            progress.advance(hits)  # the stage's open progress task counts samples
            usage = Usage(requests=sum(r.params.n for r in requests), cache_hits=hits)
            usage.cache_misses = usage.requests - hits
            try:
                for k, completion in self._stream([missing[key][0] for key in order]):
                    key = order[k]
                    if completion.ok:
                        self.cache.put(key, self.model_id, completion)
                    else:
                        usage.errors += 1
                    usage.prompt_tokens += completion.prompt_tokens
                    usage.completion_tokens += completion.completion_tokens
                    for ri, si in missing[key][1]:
                        out[ri][si] = replace(completion, sample_index=si, cached=False, identity=self.identity)
                    progress.advance(len(missing[key][1]))
            finally:
                usage.wall_s = clock.elapsed_so_far()
                with self._lock:
                    self._usage.add(usage)
        return [[c for c in row if c is not None] for row in out]

    def _stream(self, singles: list[LLMRequest]) -> Iterator[tuple[int, Completion]]:
        """Each miss as soon as it is done when the backend can stream, else the whole batch."""
        if not singles:
            return
        each = getattr(self.engine, "generate_each", None)
        if each is not None:
            yield from each(singles)
            return
        for k, row in enumerate(self.engine.generate(singles)):
            yield k, row[0]
