"""The embedded engine: real generation with Gemma 3 270M through llama.cpp (small max_tokens)."""

from __future__ import annotations

import json

import pytest

from amr_dagster.llm.base import LLMRequest, SamplingParams
from amr_dagster.llm.cache import MemoryCache
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.embedded_model import embedded_model_path, expected_sha256
from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine
from amr_dagster.llm.registry import EngineSpec, shared_cached_engine, shared_engine

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def llama() -> LlamaCppEngine:
    engine = shared_engine(EngineSpec(backend="llama_cpp", n_ctx=2048, n_threads=1))
    assert isinstance(engine, LlamaCppEngine)
    return engine


def test_embedded_model_is_assembled_once_and_verified(tmp_path) -> None:
    path = embedded_model_path(tmp_path)
    marker = json.loads(path.with_name(path.name + ".verified.json").read_text())
    assert marker["sha256"] == expected_sha256()
    mtime = path.stat().st_mtime_ns
    assert embedded_model_path(tmp_path) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not re-assembled
    # A corrupted file is detected and replaced by a verified one.
    with path.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00garbage\x00")
    path.with_name(path.name + ".verified.json").unlink()
    fixed = embedded_model_path(tmp_path)
    assert json.loads(fixed.with_name(fixed.name + ".verified.json").read_text())["sha256"] == expected_sha256()


def test_model_id_names_the_weights(llama: LlamaCppEngine) -> None:
    assert llama.model_id == f"llama_cpp:gemma-3-270m-q4_k_m:{expected_sha256()[:12]}"


def test_real_generation_is_seeded_and_counted(llama: LlamaCppEngine) -> None:
    prompt = 'def add(a, b):\n    """Return the sum of a and b."""\n'
    request = LLMRequest(prompt=prompt, params=SamplingParams(n=3, max_tokens=12, temperature=0.9, seed=42))
    first = llama.generate([request])[0]
    second = llama.generate([request])[0]
    assert [c.text for c in first] == [c.text for c in second]  # same seeds, same samples
    assert len({c.text for c in first}) > 1  # distinct per-sample seeds
    for i, c in enumerate(first):
        assert c.sample_index == i and c.ok
        assert c.prompt_tokens > 5 and 1 <= c.completion_tokens <= 12
        assert c.finish_reason in ("stop", "length")


def test_max_tokens_truncation_is_reported_as_length(llama: LlamaCppEngine) -> None:
    out = llama.generate([LLMRequest(prompt="One, two, three, four, five,", params=SamplingParams(max_tokens=3))])
    c = out[0][0]
    assert (c.finish_reason, c.completion_tokens) == ("length", 3)
    assert c.text


def test_stop_strings_cut_the_text(llama: LlamaCppEngine) -> None:
    params = SamplingParams(max_tokens=40, stop=("\n",))
    c = llama.generate([LLMRequest(prompt="Monday\nTuesday\nWednesday\n", params=params)])[0][0]
    assert c.finish_reason == "stop"
    assert "\n" not in c.text


def test_invalid_utf8_from_the_model_is_replaced_not_raised(llama: LlamaCppEngine) -> None:
    # U+1F701 has no token of its own: Gemma spells it with four byte tokens, so one generated
    # token is a lone leading byte, invalid UTF-8.
    c = llama.generate([LLMRequest(prompt="\U0001F701" * 24, params=SamplingParams(max_tokens=1))])[0][0]
    assert c.completion_tokens == 1 and c.finish_reason == "length"
    assert "\ufffd" in c.text


def test_empty_prompt_and_empty_output_are_recorded(llama: LlamaCppEngine) -> None:
    out = llama.generate([LLMRequest(prompt="", params=SamplingParams(max_tokens=2))])
    assert out[0][0].ok and out[0][0].prompt_tokens == 1  # just the BOS token


def test_too_long_prompt_is_an_error_completion_not_an_exception(llama: LlamaCppEngine) -> None:
    long = LLMRequest(prompt="word " * 5000, params=SamplingParams(max_tokens=2))
    fine = LLMRequest(prompt="Hello", params=SamplingParams(max_tokens=2))
    out = llama.generate([long, fine])
    assert out[0][0].finish_reason == "error" and "prompt_too_long" in out[0][0].error
    assert out[1][0].ok


def test_chat_requests_use_the_gemma_turn_format(llama: LlamaCppEngine) -> None:
    request = LLMRequest(messages=(("system", "Answer briefly."), ("user", "Name a colour.")), params=SamplingParams(max_tokens=6))
    c = llama.generate([request])[0][0]
    assert c.ok and c.completion_tokens >= 1
    rendered = llama._chat_prompt(request.messages)
    assert rendered.startswith("<bos><start_of_turn>user\nAnswer briefly.\n\nName a colour.<end_of_turn>\n")
    assert rendered.endswith("<start_of_turn>model\n")


def test_shared_prefixes_are_evaluated_once(llama: LlamaCppEngine) -> None:
    prefix = "Here are some Python functions and their names.\n" + "".join(
        f"def helper_{i}(x):\n    return x + {i}\n\n" for i in range(30)
    )
    requests = [
        LLMRequest(prompt=prefix + f"def target_{k}(", params=SamplingParams(max_tokens=2)) for k in range(4)
    ]
    # Interleave an unrelated prompt: the engine's ordering must still group the shared ones.
    requests.insert(2, LLMRequest(prompt="Unrelated text about the weather", params=SamplingParams(max_tokens=2)))
    llama.llm.reset()
    before = llama.prompt_tokens_evaluated
    out = llama.generate(requests)
    evaluated = llama.prompt_tokens_evaluated - before
    total = sum(row[0].prompt_tokens for row in out)
    prefix_tokens = len(llama.llm.tokenize(prefix.encode(), add_bos=True))
    assert prefix_tokens > 200
    # The 4 related prompts pay for the prefix once, not four times.
    assert evaluated < total - 2 * prefix_tokens


def test_roles_with_the_same_model_share_one_loaded_engine(tmp_path) -> None:
    generator = shared_cached_engine(EngineSpec(backend="llama_cpp", n_ctx=2048, n_threads=1, max_concurrency=1), tmp_path / "c.sqlite")
    teacher = shared_cached_engine(EngineSpec(backend="llama_cpp", n_ctx=2048, n_threads=1, max_concurrency=4), tmp_path / "c.sqlite")
    assert generator is teacher
    assert generator.engine is shared_engine(EngineSpec(backend="llama_cpp", n_ctx=2048, n_threads=1))


def test_cached_engine_over_the_real_model(llama: LlamaCppEngine) -> None:
    engine = CachedEngine(llama, MemoryCache())
    request = LLMRequest(prompt="The sky is", params=SamplingParams(n=2, max_tokens=4, temperature=0.7, seed=5))
    first = engine.generate([request])[0]
    again = engine.generate([request])[0]
    assert [c.text for c in first] == [c.text for c in again]
    assert all(c.cached for c in again)
    usage = engine.usage
    assert usage.cache_hits == 2 and usage.cache_misses == 2
    assert usage.completion_tokens == sum(c.completion_tokens for c in first)


def test_loading_the_model_prints_no_notices(capfd) -> None:
    """llama.cpp's context notices (written by C code to fd 2) stay off the terminal."""
    engine = LlamaCppEngine(n_ctx=512)
    try:
        assert engine.generate([LLMRequest(prompt="def add(a, b):", params=SamplingParams(max_tokens=4))])[0][0].ok
    finally:
        engine.close()
    err = capfd.readouterr().err
    assert "llama_kv_cache" not in err and "SWA" not in err, err
