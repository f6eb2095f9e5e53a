"""Engines that replay recorded model outputs instead of running a model.

``CacheOnlyEngine``
    Answers nothing: its ``generate`` raises ``EngineUnavailable``. Behind ``CachedEngine`` it
    means *every call must be a cache hit*: a recorded dataset is re-run (new code, new
    filters, a fresh Dagster instance) exactly, with no model installed, and any prompt that
    was not recorded fails loudly instead of being generated. In Dagster:
    ``LLMResource(backend="cache_only", model="<model id the cache was filled with>",
    cache_path=...)``; the model id must be the one recorded (it is part of every cache key),
    e.g. ``llama_cpp:gemma-3-270m-q4_k_m:a5fd3b62230a``.

``RecordedOutputsEngine``
    Answers every request with a real completion the embedded Gemma 3 270M produced for the
    same pipeline step, taken from the recorded fixtures (``tests/fixtures/recorded/*.json``,
    written by ``scripts/record_fixtures.py`` and ``scripts/record_evol_fixtures.py``). Which
    recording a request gets is chosen deterministically from a hash of (prompt or messages,
    sample seed), so any number of rows can be served realistic model text: the benchmarks use
    it to fill a cache for batches far larger than what was recorded, so parsing, rejection and
    execution paths see what the real model writes. It never invents text.

How the step of a request is told: every prompt of a step begins with that step's header line
(``header`` in ``prompts/selfcodealign.yaml`` and the evolution prompts in ``amr_evol.yaml``),
and no two steps share one. The engine indexes each fixture file by the first line of its
recorded prompts (for chat requests: ``chat:`` + the first line of the first message) and looks
up a request's first line in that index. A request whose first line matches no recording is a
configuration error (a prompt template changed without re-recording, or a step never recorded)
and raises ``ValueError`` naming the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from amr_dagster.ids import stable_id
from amr_dagster.llm.base import (
    Completion,
    EngineUnavailable,
    LLMRequest,
    collect,
)

#: The recorded outputs of the embedded model that ship with the tests.
RECORDED_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "recorded"


def _describe(request: LLMRequest) -> str:
    text = request.prompt if request.prompt is not None else " | ".join(c for _, c in request.messages or ())
    head = text.strip().replace("\n", " ")[:80]
    return f"tag={request.tag!r}, prompt starting {head!r}"


class CacheOnlyEngine:
    """A backend that has no model: wrapped in ``CachedEngine``, only cache hits succeed."""

    def __init__(self, model_id: str) -> None:
        if not model_id:
            raise ValueError("cache-only mode needs the model id the cache was recorded with")
        self.model_id = model_id

    def generate(self, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
        if not requests:
            return []
        first = requests[0]
        raise EngineUnavailable(
            f"cache miss in cache-only mode: {len(requests)} request(s) for model {self.model_id!r} "
            f"are not in the cache (first: {_describe(first)}); fill the cache with the real model first"
        )


@dataclass(frozen=True)
class RecordedOutput:
    """One real completion of the model, with the step it answered."""

    step: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    source: str  # "<fixture file>#<record index>/<sample index>"


def step_marker(request_or_prompt: LLMRequest | str | None, messages: Iterable[Sequence[str]] | None = None) -> str:
    """The line that tells a request's step: the prompt's first line, or ``chat:`` + the first
    line of the first message."""
    if isinstance(request_or_prompt, LLMRequest):
        prompt, messages = request_or_prompt.prompt, request_or_prompt.messages
    else:
        prompt = request_or_prompt
    if prompt is not None:
        return prompt.lstrip().split("\n", 1)[0].strip()
    first = next(iter(messages or ()), None)
    if first is None:
        return "chat:"
    return "chat:" + str(first[1]).lstrip().split("\n", 1)[0].strip()


def _record_outputs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Both fixture layouts: ``completions: [...]`` (generation) or one flat completion (evolution)."""
    if isinstance(record.get("completions"), list):
        return record["completions"]
    if "text" in record:
        return [record]
    return []


def load_recordings(paths: Iterable[str | Path] | None = None) -> dict[str, list[RecordedOutput]]:
    """Real recorded outputs by step marker, from the fixture files (default: all of them).

    A file's step name is its ``stage`` field, else its file stem. Failed calls (an ``error``
    or ``finish_reason == "error"``) are skipped: they were never model text.
    """
    files = sorted(Path(p) for p in paths) if paths is not None else sorted(RECORDED_DIR.glob("*.json"))
    by_marker: dict[str, list[RecordedOutput]] = {}
    step_of_marker: dict[str, str] = {}
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        step = str(data.get("stage") or path.stem)
        for ri, record in enumerate(data.get("records") or []):
            messages = record.get("messages")
            prompt = record.get("prompt") if messages is None else None
            marker = step_marker(prompt, messages)
            if not marker or marker == "chat:":
                continue
            known = step_of_marker.setdefault(marker, step)
            if known != step:  # two steps sharing a header could not be told apart
                raise ValueError(f"{path.name}: step {step!r} shares its first prompt line with step {known!r}: {marker[:80]!r}")
            for si, out in enumerate(_record_outputs(record)):
                if out.get("error") or out.get("finish_reason") == "error":
                    continue
                by_marker.setdefault(marker, []).append(
                    RecordedOutput(
                        step=step,
                        text=str(out["text"]),
                        finish_reason=str(out.get("finish_reason") or "stop"),
                        prompt_tokens=int(out.get("prompt_tokens") or 0),
                        completion_tokens=int(out.get("completion_tokens") or 0),
                        source=f"{path.name}#{ri}/{out.get('sample_index', si)}",
                    )
                )
    return by_marker


class RecordedOutputsEngine:
    """Serves real recorded completions of the matching step, chosen by a hash of the request.

    ``model_id`` is the id the answers are cached under (use the recordings' own model id to
    keep the cache honest about which model wrote the text). ``recordings``: as returned by
    ``load_recordings`` (default: every fixture file). Requests with ``n > 1`` are split into
    samples with their own seeds (``per_sample``), so sample ``i`` of a request gets its own
    draw, exactly as a real backend samples.
    """

    def __init__(self, model_id: str, recordings: dict[str, list[RecordedOutput]] | None = None) -> None:
        self.model_id = model_id
        self.recordings = recordings if recordings is not None else load_recordings()
        if not self.recordings:
            raise ValueError("no recorded outputs to replay")
        self.calls = 0

    def steps(self) -> dict[str, int]:
        """Recorded outputs per step (for reports)."""
        out: dict[str, int] = {}
        for outputs in self.recordings.values():
            out[outputs[0].step] = out.get(outputs[0].step, 0) + len(outputs)
        return out

    def choose(self, request: LLMRequest) -> RecordedOutput:
        """The recorded output a single-sample request gets (deterministic)."""
        marker = step_marker(request)
        outputs = self.recordings.get(marker)
        if not outputs:
            raise ValueError(f"no recorded outputs for a prompt starting {marker[:100]!r} (a step never recorded, or a changed template)")
        payload = request.prompt if request.prompt is not None else json.dumps([list(m) for m in request.messages or ()])
        digest = stable_id("replay", payload, request.params.seed, request.params.temperature, length=16)
        return outputs[int(digest, 16) % len(outputs)]

    def generate_each(self, requests: Sequence[LLMRequest]) -> Iterator[tuple[int, Completion]]:
        for k, request in enumerate(requests):
            if request.params.n != 1:
                raise ValueError("generate_each takes single-sample requests")
            out = self.choose(request)
            self.calls += 1
            yield k, Completion(
                text=out.text,
                finish_reason=out.finish_reason,
                prompt_tokens=out.prompt_tokens,
                completion_tokens=out.completion_tokens,
                sample_index=0,
            )

    def generate(self, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
        return collect(self, requests)
