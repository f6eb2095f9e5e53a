"""Calling the engine in chunks and accounting for what the calls cost.

Stages get an engine already wrapped by the persistent cache. Sending requests in chunks makes
crash-resume real at stage level: each finished chunk (each finished sample, with a streaming
backend) is in the cache, so a rerun after a crash repeats none of it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from amr_dagster import progress
from amr_dagster.generation.prompting import order_for_prefix_reuse
from amr_dagster.llm.base import Completion, LLMEngine, LLMRequest


def generate_in_chunks(engine: LLMEngine, requests: Sequence[LLMRequest], chunk_size: int) -> list[list[Completion]]:
    """``engine.generate`` over consecutive chunks; the result is in request order."""
    out: list[list[Completion]] = []
    for start in range(0, len(requests), chunk_size):
        chunk = list(requests[start : start + chunk_size])
        answers = engine.generate(chunk)
        if len(answers) != len(chunk):
            raise RuntimeError(f"engine returned {len(answers)} answers for {len(chunk)} requests")
        out.extend(answers)
    return out


def generate_grouped(
    engine: LLMEngine,
    requests: Sequence[LLMRequest],
    group_keys: Sequence[str],
    chunk_size: int,
    label: str = "llm",
) -> list[list[Completion]]:
    """Send requests sorted by shot-set key (rows sharing a few-shot prefix adjacent, so chunks
    hold few distinct prefixes), return the answers in the original order. Progress is reported
    as task ``label`` counting samples (the cached engine advances it per finished sample)."""
    order = order_for_prefix_reuse(group_keys, [r.tag for r in requests])
    with progress.task(label, total=sum(r.params.n for r in requests), unit="samples"):
        answers = generate_in_chunks(engine, [requests[i] for i in order], chunk_size)
    out: list[list[Completion]] = [[] for _ in requests]
    for position, index in enumerate(order):
        out[index] = answers[position]
    return out


def generate_tracked(engine: LLMEngine, requests: Sequence[LLMRequest], label: str) -> list[list[Completion]]:
    """``engine.generate(requests)`` in one batch, reported as progress task ``label`` (samples)."""
    if not requests:
        return []
    with progress.task(label, total=sum(r.params.n for r in requests), unit="samples"):
        return engine.generate(requests)


def usage_of(completions: Sequence[Completion], wall_s: float, model_id: str) -> dict[str, Any]:
    """LLM usage for stage stats: tokens count only calls really made (cache hits are free)."""
    fresh = [c for c in completions if not c.cached]
    return {
        "model": model_id,
        "requests": len(completions),
        "cache_hits": len(completions) - len(fresh),
        "cache_misses": len(fresh),
        "prompt_tokens": sum(c.prompt_tokens for c in fresh),
        "completion_tokens": sum(c.completion_tokens for c in fresh),
        "errors": sum(1 for c in completions if not c.ok),
        "finish_length": sum(1 for c in completions if c.finish_reason == "length"),
        "wall_s": round(wall_s, 3),
    }


def llm_failure(completion: Completion) -> str | None:
    """The reject reason of a failed call (``llm_error: ...``), None when the call worked."""
    if completion.ok:
        return None
    return f"llm_error: {completion.error or completion.finish_reason}"


def first_accepted(completions: Sequence[Completion], parse: Callable[[Completion], Any]) -> tuple[Completion, Any, str | None, int]:
    """The first of a row's attempts that ``parse`` accepts (its result's ``reason`` is None),
    else the first attempt: ``(completion, parse result or None, reason, attempt index)``.

    A stage that samples several attempts per row (``concept_attempts``, ``instruction_attempts``)
    keeps one row either way; a row rejected after every attempt carries the first one's reason.
    """
    first = None
    for index, completion in enumerate(completions):
        failure = llm_failure(completion)
        parsed = parse(completion) if failure is None else None
        reason = failure if failure is not None else parsed.reason
        if reason is None:
            return completion, parsed, None, index
        if first is None:
            first = (completion, parsed, reason, index)
    assert first is not None, "a request returns at least one completion"
    return first


class Timer:
    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start
