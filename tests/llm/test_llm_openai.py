"""The OpenAI-compatible backend against real servers on loopback.

- llama-cpp-python's own server running the embedded Gemma model (started and stopped here);
- a small flaky proxy (``http.server`` in a thread) in front of it that fails the first calls
  with 503/429/502, or answers with garbage, to exercise retries and recorded outcomes;
- a port nobody listens on, for "server down".
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from amr_dagster.llm.base import EngineUnavailable, LLMRequest, SamplingParams
from amr_dagster.llm.cache import SQLiteCache
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.openai_engine import OpenAIEngine, normalize_base_url
from tests.llama_server import free_port, llama_server_process


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """``python -m llama_cpp.server`` on a free loopback port; yields its /v1 base URL."""
    with llama_server_process(tmp_path_factory.mktemp("llama_server") / "server.log") as base:
        yield base


class FlakyProxy:
    """Loopback HTTP server: answers ``script`` entries first, then forwards to ``upstream``.

    A script entry is a status code (sent with a short error body, 429 with ``Retry-After: 0``),
    raw bytes (sent as a 200 JSON body, for garbage answers) or a float (stall that many seconds
    before answering 200, to trigger the client's timeout).
    """

    def __init__(self, upstream: str | None, script: list[int | bytes], repeat_last: bool = False) -> None:
        self.upstream = upstream
        self.script = list(script)
        self.repeat_last = repeat_last
        self.hits = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with proxy._lock:
                    proxy.hits += 1
                    step = proxy.script.pop(0) if proxy.script else None
                    if step is not None and proxy.repeat_last and not proxy.script:
                        proxy.script.append(step)
                if isinstance(step, float):
                    time.sleep(step)
                    self._send(200, b'{"choices":[{"text":"late","finish_reason":"stop"}]}')
                elif isinstance(step, int):
                    self._send(step, json.dumps({"error": {"message": f"scripted {step}"}}).encode(),
                               {"Retry-After": "0"} if step == 429 else {})
                elif isinstance(step, bytes):
                    self._send(200, step)
                else:
                    assert proxy.upstream, "script exhausted and no upstream"
                    r = httpx.post(proxy.upstream + self.path.removeprefix("/v1"), content=body,
                                   headers={"content-type": "application/json"}, timeout=300)
                    self._send(r.status_code, r.content)

            def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FlakyProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def fast_engine(url: str, **kw) -> OpenAIEngine:
    kw.setdefault("max_retries", 4)
    return OpenAIEngine(url, "gemma", backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=300, **kw)


def test_base_url_normalization() -> None:
    assert normalize_base_url("http://h:8000") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    with pytest.raises(ValueError):
        normalize_base_url("")


def test_backoff_is_exponential_with_full_jitter_and_honours_retry_after() -> None:
    engine = OpenAIEngine("http://127.0.0.1:9", "m", backoff_base_s=0.5, backoff_max_s=4.0)
    for attempt, cap in ((0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)):
        waits = [engine._backoff(attempt, None) for _ in range(200)]
        assert all(0 <= w <= cap for w in waits) and max(waits) > cap / 2  # spread over [0, cap]
    assert engine._backoff(0, "3") == 3.0
    assert engine._backoff(0, "120") == 4.0  # capped
    assert 0 <= engine._backoff(1, "Wed, 21 Oct 2026 07:28:00 GMT") <= 1.0  # a date: our schedule


# -- failures (no model needed) ---------------------------------------------------------------


def test_server_down_raises_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = fast_engine(url, max_retries=2)
    with pytest.raises(EngineUnavailable) as err:
        engine.generate([LLMRequest(prompt="hi")])
    message = str(err.value)
    assert f"{url}/completions" in message and "3 attempts" in message and "Connect" in message


def test_retries_exhausted_raise_with_the_last_cause() -> None:
    with FlakyProxy(None, [503], repeat_last=True) as proxy:
        engine = fast_engine(proxy.url, max_retries=3)
        with pytest.raises(EngineUnavailable) as err:
            engine.generate([LLMRequest(prompt="hi")])
    assert "HTTP 503" in str(err.value) and proxy.url in str(err.value)
    assert proxy.hits == 4


def test_a_timed_out_call_is_retried() -> None:
    ok = b'{"choices":[{"text":"on time","finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":2}}'
    with FlakyProxy(None, [2.0, ok]) as proxy:
        engine = OpenAIEngine(proxy.url, "m", timeout_s=0.5, max_retries=2, backoff_base_s=0.01)
        c = engine.generate([LLMRequest(prompt="hi")])[0][0]
    assert c.text == "on time" and proxy.hits == 2


def test_wrong_key_fails_fast_without_retrying() -> None:
    with FlakyProxy(None, [401]) as proxy:
        engine = fast_engine(proxy.url, api_key="wrong")
        with pytest.raises(EngineUnavailable, match="401"):
            engine.generate([LLMRequest(prompt="hi")])
    assert proxy.hits == 1


def test_garbage_answers_are_recorded_outcomes() -> None:
    invalid_utf8 = b'{"choices":[{"text":"ok \xf0\x9f","finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}'
    empty = b'{"choices":[{"text":"","finish_reason":null}]}'
    chat_null = b'{"choices":[{"message":{"role":"assistant","content":null},"finish_reason":"stop"}]}'
    not_json = b"<html>oops</html>"
    with FlakyProxy(None, [invalid_utf8, empty, not_json, 400, chat_null]) as proxy:
        # One call at a time; the engine sends prompts in sorted order (a, b, c, d) whatever
        # the batch order, so "a" gets the first scripted answer. Results come back in batch order.
        engine = fast_engine(proxy.url, max_concurrency=1)
        out = engine.generate([LLMRequest(prompt=p) for p in "dcba"])
        out += engine.generate([LLMRequest(messages=(("user", "e"),))])
    refused, unparsed, blank, garbled, chat = (row[0] for row in out)
    assert (garbled.text, garbled.finish_reason, garbled.completion_tokens) == ("ok \ufffd", "length", 2)
    assert (blank.text, blank.finish_reason, blank.ok) == ("", "stop", True)
    assert unparsed.finish_reason == "error" and "unparseable" in unparsed.error
    assert refused.finish_reason == "error" and "HTTP 400" in refused.error
    assert chat.ok and chat.text == ""


# -- the real server --------------------------------------------------------------------------


@pytest.mark.llm
def test_completions_against_the_real_server(llama_server) -> None:
    engine = fast_engine(llama_server)
    request = LLMRequest(prompt="def square(x):\n    return", params=SamplingParams(n=2, max_tokens=8, temperature=0.8, seed=11))
    first = engine.generate([request])[0]
    again = engine.generate([request])[0]
    assert [c.text for c in first] == [c.text for c in again]  # seeded per sample
    for i, c in enumerate(first):
        assert c.ok and c.sample_index == i
        assert c.prompt_tokens > 3 and 1 <= c.completion_tokens <= 8
        assert c.finish_reason in ("stop", "length")


@pytest.mark.llm
def test_chat_against_the_real_server(llama_server) -> None:
    engine = fast_engine(llama_server)
    c = engine.generate([LLMRequest(messages=(("user", "Name three colours."),), params=SamplingParams(max_tokens=6))])[0][0]
    # An immediate end-of-turn (empty text) is a legitimate answer; the call itself must succeed.
    assert c.ok and c.finish_reason in ("stop", "length")
    assert c.prompt_tokens > 5 and c.completion_tokens <= 6


@pytest.mark.llm
def test_prompt_too_long_for_the_server_is_a_per_request_error(llama_server) -> None:
    engine = fast_engine(llama_server, max_retries=1)
    out = engine.generate([
        LLMRequest(prompt="word " * 5000, params=SamplingParams(max_tokens=2)),
        LLMRequest(prompt="Hello", params=SamplingParams(max_tokens=2)),
    ])
    assert out[0][0].finish_reason == "error" and "400" in out[0][0].error
    assert out[1][0].ok


@pytest.mark.llm
def test_retries_then_success_through_a_flaky_proxy(llama_server) -> None:
    with FlakyProxy(llama_server, [503, 429, 502]) as proxy:
        engine = fast_engine(proxy.url, max_retries=4)
        c = engine.generate([LLMRequest(prompt="Hello there", params=SamplingParams(max_tokens=4))])[0][0]
    assert c.ok and c.completion_tokens >= 1
    assert proxy.hits == 4 and engine.calls_made == 4


@pytest.mark.llm
def test_concurrent_batch_through_the_cache_then_no_calls(llama_server, tmp_path) -> None:
    backend = fast_engine(llama_server, max_concurrency=3)
    engine = CachedEngine(backend, SQLiteCache(tmp_path / "c.sqlite"))
    requests = [LLMRequest(prompt=f"Item {i}:", params=SamplingParams(max_tokens=4, seed=i)) for i in range(6)]
    first = engine.generate(requests)
    calls = backend.calls_made
    assert calls == 6 and all(row[0].ok for row in first)
    again = engine.generate(requests)
    assert backend.calls_made == calls
    assert [r[0].text for r in again] == [r[0].text for r in first]
    usage = engine.usage
    assert (usage.cache_hits, usage.cache_misses) == (6, 6)
    assert usage.completion_tokens == sum(r[0].completion_tokens for r in first)


def test_top_p_travels_in_vllm_xargs_only_to_a_nucleus_server():
    """A vLLM-CPU server with the nucleus processor gets a greedy request (``temperature=0``,
    ``top_p=1``) with the real temperature and top-p in ``vllm_xargs``; any other server gets
    them plainly (OpenAI refuses unknown fields), and a greedy or top-p-1 request carries no
    ``vllm_xargs`` either way."""
    sampled = LLMRequest(prompt="x", params=SamplingParams(temperature=0.7, top_p=0.95, max_tokens=4, seed=7))
    greedy = LLMRequest(prompt="x", params=SamplingParams(temperature=0.0, top_p=0.95, max_tokens=4))
    nucleus = OpenAIEngine("http://127.0.0.1:9", "m", server_nucleus=True)
    plain = OpenAIEngine("http://127.0.0.1:9", "m")
    try:
        _, body = nucleus._body(sampled)
        assert (body["temperature"], body["top_p"]) == (0.0, 1.0)
        assert body["vllm_xargs"] == {"amr_top_p": 0.95, "amr_temperature": 0.7}
        assert "seed" not in body  # unseeded on a vLLM-CPU server, as in-process
        assert not nucleus.identity.seeded and plain.identity.seeded  # and its rows say so
        _, body = nucleus._body(greedy)
        assert body["top_p"] == 0.95 and "vllm_xargs" not in body
        _, body = plain._body(sampled)
        assert (body["temperature"], body["top_p"]) == (0.7, 0.95) and "vllm_xargs" not in body and body["seed"] == 7
    finally:
        nucleus.close()
        plain.close()
