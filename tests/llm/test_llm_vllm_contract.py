"""Contract test of the in-process vLLM backend (no GPU here, so no real vLLM).

We inject a module object whose ``LLM``, ``SamplingParams``, ``RequestOutput`` and
``CompletionOutput`` have the signatures and fields vLLM documents (vllm/entrypoints/llm.py:
``LLM(model, *, tensor_parallel_size=1, dtype="auto", seed=None, gpu_memory_utilization=0.9,
..., **kwargs)`` where ``enable_prefix_caching``/``max_model_len`` go to ``EngineArgs``;
``generate(prompts, /, sampling_params=None, *, use_tqdm=True, lora_request=None, ...)``;
``chat(messages, sampling_params=None, use_tqdm=True, ...)``; vllm/outputs.py:
``RequestOutput.prompt_token_ids / .outputs``, ``CompletionOutput.text / .token_ids /
.finish_reason``). Every call our engine makes is bound against those signatures, so a wrong
keyword or argument order fails here. The in-process path itself is verified only on a
machine where vLLM runs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import Any, Optional, Sequence, Union

import pytest

from amr_dagster.llm.base import EngineUnavailable, LLMRequest, SamplingParams
from amr_dagster.llm.cache import MemoryCache
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.vllm_engine import VLLMEngine

# The EngineArgs fields our engine may pass through **kwargs (vllm/engine/arg_utils.py).
ENGINE_ARGS = {"enable_prefix_caching", "max_model_len", "max_num_seqs", "enforce_eager"}


@dataclass
class FakeSamplingParams:
    """vllm.SamplingParams: the fields we use, with vLLM's defaults."""

    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    stop_token_ids: Optional[list[int]] = None
    ignore_eos: bool = False
    max_tokens: Optional[int] = 16
    min_tokens: int = 0
    logprobs: Optional[int] = None


@dataclass
class FakeCompletionOutput:
    index: int
    text: str
    token_ids: Sequence[int]
    cumulative_logprob: Optional[float]
    logprobs: Any
    finish_reason: Optional[str] = None
    stop_reason: Union[int, str, None] = None


@dataclass
class FakeRequestOutput:
    request_id: str
    prompt: Optional[str]
    prompt_token_ids: Optional[list[int]]
    prompt_logprobs: Any
    outputs: list[FakeCompletionOutput]
    finished: bool
    num_cached_tokens: Optional[int] = None


class FakeLLM:
    """Records calls; answers like vLLM would for our single-sample prompts."""

    instances: list["FakeLLM"] = []

    def __init__(
        self,
        model: str,
        *,
        task: str = "auto",
        tokenizer: Optional[str] = None,
        tokenizer_mode: str = "auto",
        skip_tokenizer_init: bool = False,
        trust_remote_code: bool = False,
        allowed_local_media_path: str = "",
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        quantization: Optional[str] = None,
        revision: Optional[str] = None,
        tokenizer_revision: Optional[str] = None,
        seed: Optional[int] = None,
        gpu_memory_utilization: float = 0.9,
        swap_space: float = 4,
        cpu_offload_gb: float = 0,
        enforce_eager: bool = False,
        max_seq_len_to_capture: int = 8192,
        disable_custom_all_reduce: bool = False,
        **kwargs: Any,
    ) -> None:
        unknown = set(kwargs) - ENGINE_ARGS
        assert not unknown, f"not EngineArgs fields: {unknown}"
        self.config = dict(model=model, tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                           gpu_memory_utilization=gpu_memory_utilization, **kwargs)
        self.calls: list[tuple[str, list, list]] = []
        FakeLLM.instances.append(self)

    def _answer(self, prompt_tokens: int, params: FakeSamplingParams, text: str) -> FakeRequestOutput:
        assert isinstance(params, FakeSamplingParams)
        tokens = list(range(min(params.max_tokens or 16, 5)))
        reason = "length" if len(tokens) == params.max_tokens else "stop"
        if text.startswith("ABORT"):
            reason = "abort"
        return FakeRequestOutput(
            request_id=str(len(self.calls)),
            prompt=text,
            prompt_token_ids=list(range(prompt_tokens)),
            prompt_logprobs=None,
            outputs=[FakeCompletionOutput(0, f"{text[-8:]}|{params.seed}", tokens, None, None, reason)],
            finished=True,
        )

    def generate(self, prompts, /, sampling_params=None, *, use_tqdm=True, lora_request=None,
                 prompt_adapter_request=None, guided_options_request=None, priority=None):
        assert isinstance(sampling_params, list) and len(sampling_params) == len(prompts)
        assert use_tqdm is False
        self.calls.append(("generate", list(prompts), list(sampling_params)))
        return [self._answer(len(p.split()), sp, p) for p, sp in zip(prompts, sampling_params)]

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, chat_template=None,
             chat_template_content_format="auto", add_generation_prompt=True, continue_final_message=False,
             tools=None, chat_template_kwargs=None, mm_processor_kwargs=None):
        assert isinstance(messages, list) and all(isinstance(conv, list) for conv in messages)
        for conv in messages:
            for m in conv:
                assert set(m) == {"role", "content"}
        assert isinstance(sampling_params, list) and len(sampling_params) == len(messages)
        self.calls.append(("chat", messages, list(sampling_params)))
        return [self._answer(7, sp, conv[-1]["content"]) for conv, sp in zip(messages, sampling_params)]


def fake_vllm() -> SimpleNamespace:
    FakeLLM.instances.clear()
    return SimpleNamespace(LLM=FakeLLM, SamplingParams=FakeSamplingParams)


def test_fake_matches_vllm_documented_fields() -> None:
    """Guard the stand-in itself: the fields our engine reads exist with vLLM's names."""
    assert {"text", "token_ids", "finish_reason", "index"} <= {f.name for f in fields(FakeCompletionOutput)}
    assert {"prompt_token_ids", "outputs"} <= {f.name for f in fields(FakeRequestOutput)}
    assert {"n", "temperature", "top_p", "max_tokens", "stop", "seed"} <= {f.name for f in fields(FakeSamplingParams)}
    params = inspect.signature(FakeLLM.generate).parameters
    assert params["prompts"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert params["use_tqdm"].kind is inspect.Parameter.KEYWORD_ONLY


def test_constructor_arguments() -> None:
    VLLMEngine("Qwen/Qwen2.5-Coder-7B", tensor_parallel_size=2, gpu_memory_utilization=0.8,
               max_model_len=8192, vllm_module=fake_vllm())
    (llm,) = FakeLLM.instances
    assert llm.config == dict(model="Qwen/Qwen2.5-Coder-7B", tensor_parallel_size=2, dtype="auto",
                              gpu_memory_utilization=0.8, enable_prefix_caching=True, max_model_len=8192)


def test_batches_map_to_generate_and_chat_with_per_sample_seeds() -> None:
    engine = VLLMEngine("m", vllm_module=fake_vllm(), chunk_size=3)
    requests = [
        LLMRequest(prompt=f"prompt number {i}", params=SamplingParams(n=2, seed=10 + i, max_tokens=5, stop=("\n",), temperature=0.7))
        for i in range(3)
    ] + [LLMRequest(messages=(("system", "be brief"), ("user", "hello")), params=SamplingParams(max_tokens=32))]
    out = engine.generate(requests)
    (llm,) = FakeLLM.instances
    kinds = [c[0] for c in llm.calls]
    assert kinds == ["generate", "generate", "chat"]  # 6 prompt samples in chunks of 3, then the chat
    sent = [sp for c in llm.calls if c[0] == "generate" for sp in c[2]]
    assert all(sp.n == 1 and sp.stop == ["\n"] and sp.max_tokens == 5 and sp.temperature == 0.7 for sp in sent)
    assert len({sp.seed for sp in sent}) == 6
    chat_call = llm.calls[2]
    assert chat_call[1] == [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]]
    assert chat_call[2][0].stop is None  # no stop strings -> vLLM's None, not []

    assert [len(row) for row in out] == [2, 2, 2, 1]
    first = out[0][0]
    assert (first.finish_reason, first.completion_tokens, first.prompt_tokens) == ("length", 5, 3)
    assert out[3][0].finish_reason == "stop" and out[3][0].prompt_tokens == 7


def test_aborted_request_is_an_error_completion_and_cache_works() -> None:
    engine = CachedEngine(VLLMEngine("m", vllm_module=fake_vllm()), MemoryCache())
    out = engine.generate([LLMRequest(prompt="ABORT me"), LLMRequest(prompt="fine")])
    assert out[0][0].finish_reason == "error" and "abort" in out[0][0].error
    assert out[1][0].ok
    again = engine.generate([LLMRequest(prompt="fine")])
    assert again[0][0].cached
    assert engine.model_id == "vllm:m"


def test_missing_vllm_is_a_clear_error() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(EngineUnavailable, match="amr-dagster\\[vllm\\]"):
            VLLMEngine("m")
    else:  # pragma: no cover - on a GPU machine with vLLM installed
        pytest.skip("vllm is installed here; the missing-package message cannot be tested")
