"""In-process vLLM (GPU machines): whole batches into ``vllm.LLM.generate`` / ``LLM.chat``.

vLLM schedules a submitted batch itself (continuous batching) and, with
``enable_prefix_caching=True``, computes a shared few-shot prefix once for every prompt that
starts with it, so the right thing is to hand it many prompts at once. We submit in chunks of
``chunk_size`` single-sample prompts: big enough for vLLM to schedule well, small enough that
the cache commits regularly (a killed run loses at most one chunk).

Samples: like every backend here, sample ``i`` is a separate prompt with its own seed
(``base.sample_seed``) rather than vLLM's ``n``; with prefix caching identical prompts share
their KV blocks, so this costs no extra prompt processing.

``vllm`` is an optional extra imported lazily; tests inject a module object with vLLM's
documented signatures. The in-process path is verified only where vLLM runs (a GPU machine);
a ``vllm serve`` fleet is used through ``OpenAIEngine`` instead.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Iterator, Sequence

from amr_dagster.llm.base import (
    FINISH_LENGTH,
    FINISH_STOP,
    Completion,
    EngineUnavailable,
    LLMRequest,
    collect,
    error_completion,
)


def _import_vllm() -> ModuleType:
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise EngineUnavailable(
            "backend 'vllm' needs the optional extra: pip install 'amr-dagster[vllm]' "
            f"(on a machine with a GPU): {exc}"
        ) from exc


class VLLMEngine:
    """``vllm.LLM`` held in-process; one instance per model per process (see ``registry``)."""

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        dtype: str = "auto",
        chunk_size: int = 512,
        vllm_module: ModuleType | Any | None = None,
    ) -> None:
        self._vllm = vllm_module if vllm_module is not None else _import_vllm()
        self.model = model
        self.model_id = f"vllm:{model}"
        self.chunk_size = max(1, chunk_size)
        kwargs: dict[str, Any] = dict(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=enable_prefix_caching,
            dtype=dtype,
        )
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = self._vllm.LLM(**kwargs)

    def _sampling(self, request: LLMRequest) -> Any:
        p = request.params
        return self._vllm.SamplingParams(
            n=1,
            temperature=p.temperature,
            top_p=p.top_p,
            max_tokens=p.max_tokens,
            stop=list(p.stop) or None,
            seed=p.seed,
        )

    @staticmethod
    def _completion(output: Any) -> Completion:
        """One ``RequestOutput`` (single sample) to our record."""
        prompt_tokens = len(output.prompt_token_ids or [])
        if not output.outputs:
            return error_completion("vllm returned no output", 0)
        sample = output.outputs[0]
        reason = sample.finish_reason
        if reason not in (FINISH_STOP, FINISH_LENGTH):
            # "abort" (or None): vLLM gave up on this request, e.g. prompt longer than max_model_len.
            return error_completion(f"vllm finish_reason={reason!r}", 0)
        return Completion(
            text=sample.text,
            finish_reason=reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(sample.token_ids),
            sample_index=0,
        )

    def generate_each(self, requests: Sequence[LLMRequest]) -> Iterator[tuple[int, Completion]]:
        """Single-sample requests, chunk by chunk; plain prompts and chats go in separate calls."""
        plain = [k for k, r in enumerate(requests) if not r.is_chat]
        chats = [k for k, r in enumerate(requests) if r.is_chat]
        for indices, is_chat in ((plain, False), (chats, True)):
            for start in range(0, len(indices), self.chunk_size):
                chunk = indices[start : start + self.chunk_size]
                params = [self._sampling(requests[k]) for k in chunk]
                if is_chat:
                    conversations = [
                        [{"role": role, "content": content} for role, content in requests[k].messages or ()]
                        for k in chunk
                    ]
                    outputs = self.llm.chat(conversations, params, use_tqdm=False)
                else:
                    prompts = [requests[k].prompt for k in chunk]
                    outputs = self.llm.generate(prompts, params, use_tqdm=False)
                for k, output in zip(chunk, outputs):
                    yield k, self._completion(output)

    def generate(self, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
        return collect(self, requests)
