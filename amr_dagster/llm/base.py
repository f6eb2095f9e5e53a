"""The one interface every LLM backend speaks, and the records it exchanges.

A stage builds a batch of ``LLMRequest`` (a completion-style prompt, or chat messages for an
instruct teacher) and gets back, for each request, ``params.n`` ``Completion`` records in the
same order. Backends differ (llama.cpp in-process, an OpenAI-compatible server, in-process
vLLM); stages never look past this module and always call through ``CachedEngine``
(``amr_dagster.llm.cached``), which adds the persistent cache and token accounting.

Error policy (the same for every backend):

- A *bad output* is data, never an exception: an empty text, a text cut at ``max_tokens``
  (``finish_reason="length"``), bytes that are not valid UTF-8 (decoded with replacement
  characters) all come back as ordinary completions for the stage to reject with a reason.
- A *bad request* (the server answers 4xx other than 408/429 for this one prompt, e.g. the
  prompt does not fit the context window) becomes ``Completion(finish_reason="error",
  error=...)`` for that request only, so one bad row never sinks a batch. Such completions are
  not cached: a rerun tries them again.
- An *unavailable engine* (server down or still failing after the last retry, model file
  missing) raises ``EngineUnavailable`` naming the URL or path and the cause. Turning it into
  empty rows would silently reject a whole batch for an infrastructure fault; raising makes
  the materialization fail loudly and retryable, and the cache keeps every finished call.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

from amr_dagster.ids import stable_id

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_ERROR = "error"


class EngineUnavailable(RuntimeError):
    """The engine cannot serve at all (server down, retries exhausted, model missing)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``seed`` is the request's base seed; sample ``i`` uses ``sample_seed(seed, i)``."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not isinstance(self.stop, tuple):  # a list would make the dataclass unhashable
            object.__setattr__(self, "stop", tuple(self.stop))


@dataclass(frozen=True)
class LLMRequest:
    """One prompt (completion style) or one conversation (chat style); ``tag`` is a row id for logs."""

    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    tag: str = ""

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("LLMRequest needs exactly one of prompt or messages")
        if self.messages is not None:  # lists from callers become hashable tuples
            frozen = tuple((str(role), str(content)) for role, content in self.messages)
            object.__setattr__(self, "messages", frozen)

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True)
class ModelIdentity:
    """What produced a completion, for lineage: engine (and version), model, checkpoint checksum.

    ``seeded`` is False where the engine ignores per-request seeds (vLLM's CPU build): such rows
    are reproducible only through the persistent cache. ``checkpoint_sha256`` is "" when the
    weights are not known here (a hosted model, a hub name).
    """

    engine: str
    model: str
    checkpoint_sha256: str = ""
    seeded: bool = True

    @classmethod
    def from_model_id(cls, model_id: str) -> "ModelIdentity":
        """Best effort for engines that only know a ``kind:name[:sha12]`` model id."""
        kind, _, rest = model_id.partition(":")
        name, _, sha = rest.partition(":")
        return cls(engine=kind, model=name or model_id, checkpoint_sha256=sha)


@dataclass(frozen=True)
class Completion:
    """One sample. ``finish_reason`` is "stop", "length" or "error" (then ``error`` says why).

    ``identity`` says which engine, model and checkpoint produced it (set by ``CachedEngine``
    on fresh and cached completions alike).
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    sample_index: int
    cached: bool = False
    error: str | None = None
    identity: ModelIdentity | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.finish_reason != FINISH_ERROR


def error_completion(message: str, sample_index: int) -> Completion:
    """A per-request failure recorded as data (see the module's error policy)."""
    return Completion(
        text="",
        finish_reason=FINISH_ERROR,
        prompt_tokens=0,
        completion_tokens=0,
        sample_index=sample_index,
        cached=False,
        error=message,
    )


def sample_seed(seed: int | None, sample_index: int) -> int | None:
    """A distinct, reproducible 31-bit seed per sample index (``None`` stays ``None``: unseeded).

    Sample 0 keeps the base seed when it already fits in 31 bits, so ``n=1`` requests use
    exactly the seed the stage chose; other samples (and wider base seeds, e.g. 63-bit
    ``ids.seed_for``) are hashed down to 31 bits, which every backend accepts (llama.cpp's
    sampler takes a uint32, some servers an int32).
    """
    if seed is None:
        return None
    if sample_index == 0 and 0 <= seed < 2**31:
        return seed
    return int(stable_id("sample", seed, sample_index, length=8), 16) & 0x7FFFFFFF


def per_sample(request: LLMRequest) -> list[LLMRequest]:
    """Split a request with ``n`` samples into ``n`` single-sample requests with their own seeds.

    Every backend samples this way, so sample ``i`` of a request is the same call whatever the
    backend batches, and the cache can hold each sample separately (raising ``n`` later reuses
    the samples already made).
    """
    p = request.params
    return [
        LLMRequest(
            prompt=request.prompt,
            messages=request.messages,
            params=SamplingParams(
                n=1,
                temperature=p.temperature,
                top_p=p.top_p,
                max_tokens=p.max_tokens,
                stop=p.stop,
                seed=sample_seed(p.seed, i),
            ),
            tag=request.tag,
        )
        for i in range(p.n)
    ]


@runtime_checkable
class LLMEngine(Protocol):
    """A backend. ``model_id`` identifies the weights (part of every cache key); ``identity``
    (optional, else derived from ``model_id``) is what rows record as lineage."""

    model_id: str

    def generate(self, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
        """``params.n`` completions per request, in request order (sample_index 0..n-1)."""
        ...


class StreamingEngine(LLMEngine, Protocol):
    """A backend that reports each single-sample request as soon as it is finished.

    ``generate_each`` takes requests with ``n == 1`` and yields ``(index, completion)`` in
    completion order; ``CachedEngine`` commits each one to the cache at once, which is what
    makes a killed run lose only its in-flight calls.
    """

    def generate_each(self, requests: Sequence[LLMRequest]) -> Iterator[tuple[int, Completion]]: ...


def collect(engine: StreamingEngine, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
    """``generate`` for a streaming backend: explode samples, stream, regroup in order."""
    singles: list[tuple[int, int, LLMRequest]] = []
    for ri, request in enumerate(requests):
        for si, single in enumerate(per_sample(request)):
            singles.append((ri, si, single))
    out: list[list[Completion | None]] = [[None] * r.params.n for r in requests]
    for k, completion in engine.generate_each([s for _, _, s in singles]):
        ri, si, _ = singles[k]
        out[ri][si] = replace(completion, sample_index=si)
    return [[c for c in row if c is not None] for row in out]


def identity_of(engine: object) -> ModelIdentity:
    """An engine's lineage record: its ``identity`` or one derived from its ``model_id``."""
    found = getattr(engine, "identity", None)
    if isinstance(found, ModelIdentity):
        return found
    return ModelIdentity.from_model_id(str(getattr(engine, "model_id", "")))


def decode_text(data: bytes | str) -> str:
    """Model bytes to text; invalid UTF-8 becomes U+FFFD instead of an exception."""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


@dataclass
class Usage:
    """Token and call accounting for one materialization (reset it at the start of one).

    ``requests`` counts completions asked for (one per sample); ``cache_hits + cache_misses ==
    requests``. Tokens count only what the backend really processed (cache hits cost nothing).
    """

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    errors: int = 0
    wall_s: float = 0.0
    model_id: str = ""

    def add(self, other: "Usage") -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.errors += other.errors
        self.wall_s += other.wall_s
        self.model_id = self.model_id or other.model_id

    def copy(self) -> "Usage":
        return Usage(**asdict(self))

    def as_metadata(self, prefix: str = "llm_") -> dict[str, Any]:
        """Flat, JSON-friendly values for ``MaterializeResult(metadata=...)``."""
        gen_tps = self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0
        return {
            f"{prefix}model": self.model_id,
            f"{prefix}requests": self.requests,
            f"{prefix}prompt_tokens": self.prompt_tokens,
            f"{prefix}completion_tokens": self.completion_tokens,
            f"{prefix}cache_hits": self.cache_hits,
            f"{prefix}cache_misses": self.cache_misses,
            f"{prefix}errors": self.errors,
            f"{prefix}wall_s": round(self.wall_s, 3),
            f"{prefix}generated_tokens_per_s": round(gen_tps, 2),
        }


class Stopwatch:
    """Tiny context manager measuring wall seconds."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.elapsed = 0.0
        return self

    def elapsed_so_far(self) -> float:
        return time.perf_counter() - self.start

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start
