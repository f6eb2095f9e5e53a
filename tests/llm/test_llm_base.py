"""Unit tests of the engine interface, the cache keys and ``CachedEngine``'s bookkeeping.

The engine here is a small scripted stand-in, used only to test the wrapper's logic (which
samples hit, which go to the backend, what is committed); the same wrapper runs against the
real llama.cpp model and the real HTTP server in ``test_llm_llama_cpp.py``,
``test_llm_cache.py`` and ``test_llm_openai.py``.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import pytest

from amr_dagster.llm.base import (
    Completion,
    LLMEngine,
    LLMRequest,
    SamplingParams,
    Usage,
    decode_text,
    error_completion,
    per_sample,
    sample_seed,
)
from amr_dagster.llm.cache import MemoryCache, SQLiteCache, cache_key
from amr_dagster.llm.cached import CachedEngine


class ScriptedEngine:
    """Echoes the prompt and seed; prompts starting with "bad" come back as error completions."""

    model_id = "scripted:v1"

    def __init__(self) -> None:
        self.calls: list[LLMRequest] = []

    def generate_each(self, requests: Sequence[LLMRequest]) -> Iterator[tuple[int, Completion]]:
        for k, request in enumerate(requests):
            assert request.params.n == 1
            self.calls.append(request)
            if (request.prompt or "").startswith("bad"):
                yield k, error_completion("HTTP 400: refused", 0)
            else:
                yield k, Completion(f"{request.prompt}|{request.params.seed}", "stop", 3, 2, 0)

    def generate(self, requests):  # pragma: no cover - CachedEngine streams
        raise AssertionError("CachedEngine must use generate_each")


def test_engine_protocol_is_structural() -> None:
    assert isinstance(ScriptedEngine(), LLMEngine)


def test_request_needs_exactly_one_of_prompt_or_messages() -> None:
    with pytest.raises(ValueError):
        LLMRequest()
    with pytest.raises(ValueError):
        LLMRequest(prompt="x", messages=(("user", "x"),))
    chat = LLMRequest(messages=[["user", "hi"]])  # lists are frozen into tuples
    assert chat.messages == (("user", "hi"),) and chat.is_chat
    hash(chat)


def test_sampling_params_validate_and_freeze_stop() -> None:
    with pytest.raises(ValueError):
        SamplingParams(n=0)
    with pytest.raises(ValueError):
        SamplingParams(max_tokens=0)
    assert SamplingParams(stop=["\n"]).stop == ("\n",)


def test_sample_seeds_are_distinct_reproducible_and_31_bit() -> None:
    seeds = [sample_seed(1234, i) for i in range(50)]
    assert seeds[0] == 1234  # sample 0 keeps a seed that already fits
    assert len(set(seeds)) == 50
    assert seeds == [sample_seed(1234, i) for i in range(50)]
    wide = (1 << 62) + 5  # e.g. ids.seed_for gives 63-bit seeds
    assert all(0 <= sample_seed(wide, i) < 2**31 for i in range(10))
    assert sample_seed(None, 3) is None


def test_per_sample_splits_n_with_own_seeds() -> None:
    request = LLMRequest(prompt="p", params=SamplingParams(n=3, seed=7, temperature=0.8), tag="row1")
    singles = per_sample(request)
    assert [s.params.n for s in singles] == [1, 1, 1]
    assert [s.params.seed for s in singles] == [sample_seed(7, i) for i in range(3)]
    assert all(s.prompt == "p" and s.tag == "row1" and s.params.temperature == 0.8 for s in singles)


def test_cache_key_ignores_n_but_not_sample_index_or_params() -> None:
    a = LLMRequest(prompt="p", params=SamplingParams(n=1, seed=1))
    b = LLMRequest(prompt="p", params=SamplingParams(n=5, seed=1))
    assert cache_key("m", a, 0) == cache_key("m", b, 0)
    assert cache_key("m", a, 0) != cache_key("m", a, 1)
    assert cache_key("m", a, 0) != cache_key("other", a, 0)
    for changed in (
        SamplingParams(seed=2),
        SamplingParams(seed=1, temperature=0.5),
        SamplingParams(seed=1, top_p=0.9),
        SamplingParams(seed=1, max_tokens=10),
        SamplingParams(seed=1, stop=("\n",)),
    ):
        assert cache_key("m", a, 0) != cache_key("m", LLMRequest(prompt="p", params=changed), 0)
    chat = LLMRequest(messages=(("user", "p"),), params=SamplingParams(seed=1))
    assert cache_key("m", chat, 0) != cache_key("m", a, 0)


def test_decode_text_replaces_invalid_utf8() -> None:
    assert decode_text(b"ok \xf0\x9f") == "ok \ufffd"
    assert decode_text("already text") == "already text"


def test_cached_engine_hits_misses_and_raising_n_reuses_samples() -> None:
    backend = ScriptedEngine()
    engine = CachedEngine(backend, MemoryCache())
    first = engine.generate([LLMRequest(prompt="p", params=SamplingParams(n=2, seed=9))])
    assert [c.sample_index for c in first[0]] == [0, 1]
    assert not any(c.cached for c in first[0])
    assert first[0][0].text != first[0][1].text  # distinct per-sample seeds
    assert len(backend.calls) == 2

    more = engine.generate([LLMRequest(prompt="p", params=SamplingParams(n=4, seed=9))])
    assert [c.cached for c in more[0]] == [True, True, False, False]
    assert [c.text for c in more[0][:2]] == [c.text for c in first[0]]
    assert len(backend.calls) == 4  # only samples 2 and 3 were new
    usage = engine.usage
    assert (usage.requests, usage.cache_hits, usage.cache_misses) == (6, 2, 4)
    assert usage.prompt_tokens == 4 * 3 and usage.completion_tokens == 4 * 2


def test_cached_engine_keeps_order_and_shares_duplicates_within_a_batch() -> None:
    backend = ScriptedEngine()
    engine = CachedEngine(backend, MemoryCache())
    requests = [LLMRequest(prompt=p, params=SamplingParams(seed=1)) for p in ("b1", "a", "b1", "c")]
    out = engine.generate(requests)
    assert [row[0].text for row in out] == ["b1|1", "a|1", "b1|1", "c|1"]
    assert len(backend.calls) == 3


def test_error_completions_are_recorded_not_cached_and_retried_next_time() -> None:
    backend = ScriptedEngine()
    cache = MemoryCache()
    engine = CachedEngine(backend, cache)
    out = engine.generate([LLMRequest(prompt="bad one"), LLMRequest(prompt="good")])
    assert out[0][0].finish_reason == "error" and "400" in out[0][0].error
    assert out[1][0].ok
    assert len(cache) == 1 and engine.usage.errors == 1
    engine.generate([LLMRequest(prompt="bad one")])
    assert [c.prompt for c in backend.calls] == ["bad one", "good", "bad one"]


def test_usage_snapshot_and_metadata() -> None:
    engine = CachedEngine(ScriptedEngine(), MemoryCache())
    engine.generate([LLMRequest(prompt="x")])
    snap = engine.snapshot()
    engine.generate([LLMRequest(prompt="x"), LLMRequest(prompt="y")])
    since = engine.usage_since(snap)
    assert (since.requests, since.cache_hits, since.cache_misses) == (2, 1, 1)
    meta = since.as_metadata()
    assert meta["llm_model"] == "scripted:v1" and meta["llm_cache_hits"] == 1
    assert all(isinstance(v, (int, float, str)) for v in meta.values())
    done = engine.reset_usage()
    assert done.requests == 3 and engine.usage.requests == 0
    total = Usage()
    total.add(done)
    assert total.requests == 3


def test_sqlite_cache_persists_across_connections(tmp_path) -> None:
    path = tmp_path / "c.sqlite"
    engine = CachedEngine(ScriptedEngine(), SQLiteCache(path))
    engine.generate([LLMRequest(prompt="text with \ufffd and ünïcode", params=SamplingParams(n=2, seed=3))])
    reopened = SQLiteCache(path)
    assert reopened.count() == 2
    backend = ScriptedEngine()
    again = CachedEngine(backend, reopened).generate(
        [LLMRequest(prompt="text with \ufffd and ünïcode", params=SamplingParams(n=2, seed=3))]
    )
    assert backend.calls == [] and all(c.cached for c in again[0])
    journal = reopened._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert journal.lower() == "wal"
