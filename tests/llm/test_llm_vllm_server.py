"""vLLM's OpenAI-compatible server for real, used through the project's ``openai`` backend.

The fixture starts ``python -m vllm.entrypoints.openai.api_server`` on the converted checkpoint,
on a free loopback port, in its own process group, and stops the whole group at the end.
"""

from __future__ import annotations

import os

import pytest

from tests.llm.vllm_fixtures import checkpoint, fewshot_prompt, llama  # noqa: F401

from amr_dagster.llm.base import LLMRequest, ModelIdentity, SamplingParams  # noqa: E402
from amr_dagster.llm.cache import MemoryCache  # noqa: E402
from amr_dagster.llm.cached import CachedEngine  # noqa: E402
from amr_dagster.llm.embedded_model import EMBEDDED_NAME  # noqa: E402
from amr_dagster.llm.openai_engine import OpenAIEngine  # noqa: E402
from amr_dagster.llm.vllm_engine import cpu_dtype, vllm_version  # noqa: E402
from amr_dagster.llm.vllm_server import VLLMServer  # noqa: E402

# Engine starts take 1.5-3 minutes on two idle cores, far longer on a loaded machine.
pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def server(checkpoint):  # noqa: F811
    with VLLMServer(checkpoint.path, served_name=EMBEDDED_NAME, extra_args=("--enforce-eager",)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server, checkpoint):  # noqa: F811
    identity = ModelIdentity(engine=f"vllm-server {vllm_version()}", model=EMBEDDED_NAME, checkpoint_sha256=checkpoint.sha256)
    engine = OpenAIEngine(
        server.base_url, EMBEDDED_NAME, max_concurrency=4, max_retries=2, identity=identity, server_nucleus=server.nucleus
    )
    yield engine
    engine.close()


def test_server_binds_loopback_on_a_free_port(server):
    assert server.base_url.startswith("http://127.0.0.1:") and server.port not in (0, 8000)


def test_batch_through_openai_backend_with_bounded_concurrency(client, llama, checkpoint):  # noqa: F811
    requests = [
        LLMRequest(
            prompt=fewshot_prompt(f"Write a function `h{i}(n)` that returns the {i}-th power of `n`."),
            params=SamplingParams(n=2 if i % 3 == 0 else 1, temperature=0.7, max_tokens=32, seed=i),
            tag=f"row{i}",
        )
        for i in range(10)
    ]
    cached = CachedEngine(client, MemoryCache())
    out = cached.generate(requests)
    assert [len(row) for row in out] == [r.params.n for r in requests]
    for request, row in zip(requests, out):
        for completion in row:
            assert completion.ok and completion.completion_tokens > 0
            # The server fed exactly llama.cpp's ids: <bos> included (without it Gemma writes garbage).
            assert completion.prompt_tokens == len(llama.prompt_token_ids(request))
            assert completion.identity.checkpoint_sha256 == checkpoint.sha256
    assert client.calls_made == sum(r.params.n for r in requests)
    again = cached.generate(requests)
    assert all(c.cached for row in again for c in row) and client.calls_made == sum(r.params.n for r in requests)


def test_cpu_server_runs_the_cpu_dtype_and_applies_top_p_through_the_nucleus_processor(server, client):
    """The in-process engine's CPU settings reach the server: the dtype ``cpu_dtype`` picks
    (float32 where the CPU has no native bf16) and our top-p processor. The client sends a
    greedy request with the real temperature and top-p in ``vllm_xargs``; at temperature 1 a
    top-p of 0.001 leaves one token per step, so every draw writes the greedy text. Were the
    processor not drawing, the greedy request would write it too: so a top-p of 0.999 at
    temperature 1.5 must write something else in at least one of three draws. (The client leaves
    the seeds out for this server, so the draws are unseeded.)"""
    assert server.cpu and server.nucleus and client.server_nucleus
    assert f"dtype=torch.{cpu_dtype()}" in server.log_tail(200_000)
    prompt = fewshot_prompt("Write a function `area(w, h)` that returns the area of a rectangle.")
    greedy = client.generate([LLMRequest(prompt=prompt, params=SamplingParams(temperature=0.0, max_tokens=32))])[0][0]
    nucleus = client.generate(
        [LLMRequest(prompt=prompt, params=SamplingParams(temperature=1.0, top_p=0.001, max_tokens=32, seed=s)) for s in (1, 2, 3)]
    )
    assert greedy.ok and greedy.text.strip()
    assert [row[0].text for row in nucleus] == [greedy.text] * 3
    wide = client.generate(
        [LLMRequest(prompt=prompt, params=SamplingParams(temperature=1.5, top_p=0.999, max_tokens=32, seed=s)) for s in (4, 5, 6)]
    )
    assert any(row[0].ok and row[0].text != greedy.text for row in wide)


def test_the_server_logs_at_info_unless_the_user_chose_a_level(monkeypatch, tmp_path):
    """An in-process engine quiets vLLM's logging through the environment (``import_vllm``); a
    server started later in that process must still write INFO lines to its own log."""
    from amr_dagster.llm import vllm_engine

    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "ERROR")
    monkeypatch.setitem(vllm_engine.QUIETED, "VLLM_LOGGING_LEVEL", "ERROR")  # set by import_vllm
    assert VLLMServer(tmp_path, cpu=True).env["VLLM_LOGGING_LEVEL"] == "INFO"
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")  # the user's own choice
    assert VLLMServer(tmp_path, cpu=True).env["VLLM_LOGGING_LEVEL"] == "DEBUG"


def test_chat_completions(client):
    out = client.generate(
        [LLMRequest(messages=(("user", "Write a Python function that adds two numbers."),), params=SamplingParams(max_tokens=48))]
    )[0][0]
    assert out.ok and out.text.strip() and out.prompt_tokens > 0


def test_too_long_prompt_is_a_per_request_error(client, server):
    out = client.generate(
        [
            LLMRequest(prompt="word " * 9000, params=SamplingParams(max_tokens=8)),
            LLMRequest(prompt="def add(a, b):", params=SamplingParams(max_tokens=8)),
        ]
    )
    assert out[0][0].finish_reason == "error" and "HTTP 400" in out[0][0].error
    assert out[1][0].ok


def test_stop_ends_the_whole_process_group(checkpoint):  # noqa: F811
    server = VLLMServer(checkpoint.path, served_name="stop-test", extra_args=("--enforce-eager",))
    server.start()
    pgid = server.process.pid
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
