"""Replay engines: cache-only re-runs and real recorded outputs served for any prompt."""

from __future__ import annotations

import json

import polars as pl
import pytest

from amr_dagster.generation.concepts import seed_concepts
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.llm.base import EngineUnavailable, LLMRequest, SamplingParams
from amr_dagster.llm.cache import MemoryCache, SQLiteCache
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.registry import EngineSpec, build_engine
from amr_dagster.llm.replay import RECORDED_DIR, CacheOnlyEngine, RecordedOutputsEngine, load_recordings, step_marker

MODEL = "llama_cpp:gemma-3-270m-q4_k_m:a5fd3b62230a"


def _recorded(stage: str) -> dict:
    return json.loads((RECORDED_DIR / f"{stage}.json").read_text(encoding="utf-8"))


def _recorded_texts(stage: str) -> set[str]:
    return {c["text"] for r in _recorded(stage)["records"] for c in r["completions"]}


def test_cache_only_raises_on_a_miss():
    engine = CachedEngine(CacheOnlyEngine(MODEL), MemoryCache())
    request = LLMRequest(prompt="never recorded", params=SamplingParams(max_tokens=8, seed=1))
    with pytest.raises(EngineUnavailable, match="cache miss in cache-only mode"):
        engine.generate([request])
    assert engine.usage.cache_misses == 1


def test_cache_only_serves_hits_recorded_by_another_engine(tmp_path):
    path = tmp_path / "cache.sqlite"
    record = _recorded("instructions")["records"][0]
    params = SamplingParams(**{**record["params"], "n": 2, "stop": tuple(record["params"]["stop"])})
    request = LLMRequest(prompt=record["prompt"], params=params, tag=record["tag"])

    filler = CachedEngine(RecordedOutputsEngine(MODEL), SQLiteCache(path))
    recorded = filler.generate([request])[0]
    assert filler.usage.cache_misses == 2

    replay = CachedEngine(CacheOnlyEngine(MODEL), SQLiteCache(path))  # a fresh connection, as a new process has
    again = replay.generate([request])[0]
    assert [c.text for c in again] == [c.text for c in recorded]
    assert all(c.cached for c in again)
    assert replay.usage.cache_hits == 2 and replay.usage.cache_misses == 0

    # another model id is another key: a miss, so it raises instead of answering
    with pytest.raises(EngineUnavailable):
        CachedEngine(CacheOnlyEngine("other-model"), SQLiteCache(path)).generate([request])


def test_registry_builds_cache_only_backend():
    engine = build_engine(EngineSpec(backend="cache_only", model=MODEL))
    assert isinstance(engine, CacheOnlyEngine) and engine.model_id == MODEL
    with pytest.raises(ValueError):
        CacheOnlyEngine("")


def test_recorded_outputs_are_real_text_of_the_matching_step():
    engine = RecordedOutputsEngine(MODEL)
    for stage in ("concepts", "instructions", "responses"):
        record = _recorded(stage)["records"][-1]
        # a prompt never recorded, but of the same step (same header), different query
        prompt = record["prompt"] + "extra"
        params = SamplingParams(**{**record["params"], "n": 3, "stop": tuple(record["params"]["stop"])})
        answers = engine.generate([LLMRequest(prompt=prompt, params=params)])[0]
        assert len(answers) == 3
        assert {a.text for a in answers} <= _recorded_texts(stage)
        assert all(a.finish_reason in ("stop", "length") for a in answers)


def test_recorded_outputs_are_deterministic_and_vary_with_the_prompt():
    engine = RecordedOutputsEngine(MODEL)
    record = _recorded("concepts")["records"][0]
    params = SamplingParams(**{**record["params"], "stop": tuple(record["params"]["stop"])})
    first = [engine.generate([LLMRequest(prompt=record["prompt"] + f"# {i}\n", params=params)])[0][0].text for i in range(40)]
    again = [RecordedOutputsEngine(MODEL).generate([LLMRequest(prompt=record["prompt"] + f"# {i}\n", params=params)])[0][0].text for i in range(40)]
    assert first == again
    assert len(set(first)) > 1  # spread over the recordings, not one answer for everything


def test_unknown_step_is_an_error():
    engine = RecordedOutputsEngine(MODEL)
    with pytest.raises(ValueError, match="no recorded outputs"):
        engine.generate([LLMRequest(prompt="Translate to French:\nhello", params=SamplingParams())])


def test_every_recorded_step_has_its_own_marker():
    recordings = load_recordings()
    steps = {outputs[0].step for outputs in recordings.values()}
    assert {"concepts", "instructions", "responses"} <= steps
    assert step_marker(LLMRequest(messages=(("system", "Line one\nmore"), ("user", "x")))) == "chat:Line one"


def test_a_generation_stage_runs_on_recorded_outputs_then_replays_from_cache_only():
    seeds = pl.DataFrame(_recorded("concepts")["inputs"])
    config = GenerationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in _recorded("concepts")["config"].items()})
    cache = MemoryCache()
    filled, _ = seed_concepts(seeds, CachedEngine(RecordedOutputsEngine(MODEL), cache), config)
    replayed, stats = seed_concepts(seeds, CachedEngine(CacheOnlyEngine(MODEL), cache), config)
    same = [c for c in filled.columns if c not in ("cached", "prompt_tokens", "completion_tokens")]  # hits cost no tokens
    assert filled.select(same).equals(replayed.select(same))
    assert not any(filled.get_column("cached").to_list()) and all(replayed.get_column("cached").to_list())
    assert stats["llm"]["cache_misses"] == 0 and stats["llm"]["cache_hits"] == seeds.height
    assert set(filled.get_column("raw_output").to_list()) <= _recorded_texts("concepts")


def test_llm_resource_cache_only_replays_a_filled_cache(tmp_path):
    from resources.llm import LLMResource

    path = tmp_path / "cache.sqlite"
    request = LLMRequest(prompt=_recorded("concepts")["records"][0]["prompt"], params=SamplingParams(max_tokens=48, stop=("\n",), seed=7))
    recorded = CachedEngine(RecordedOutputsEngine(MODEL), SQLiteCache(path)).generate([request])[0][0]

    role = LLMResource(backend="cache_only", model=MODEL, cache_path=str(path))
    engine = role.engine()
    assert engine is not None
    assert isinstance(engine.engine, CacheOnlyEngine) and role.model_id() == MODEL
    before = role.usage_snapshot()
    assert engine.generate([request])[0][0].text == recorded.text
    assert role.usage_since(before)["cache_hits"] == 1
    with pytest.raises(EngineUnavailable):
        engine.generate([LLMRequest(prompt="not recorded", params=SamplingParams())])
