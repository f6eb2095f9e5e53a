"""``LLMResource``: an LLM role (``generator`` or ``teacher``) as a Dagster resource.

The resource holds configuration only; the live engine comes from the process-wide registry
(``amr_dagster.llm.registry``), so two roles configured for the same model share ONE loaded
model, and every stage call goes through the persistent cache. ``engine()`` builds it lazily
on first use (a step that never calls it loads nothing); backend ``"none"`` gives ``None`` and
the stages skip their LLM work.

Accounting for asset metadata::

    before = generator.usage_snapshot()
    ... stage work through generator.engine() ...
    metadata["llm"] = generator.usage_since(before)   # requests, tokens, cache hits, wall time

API keys: pass ``dg.EnvVar("...")`` for ``api_key`` (``from_env`` does), so the secret is read at
launch and never shown in the UI.

Executors: Dagster's multiprocess executor builds resources per step process, so an in-process
model (llama.cpp, vLLM) reloads in every step. Run LLM steps with the in-process executor (the
project's default), or serve the model (``vllm serve``, ``python -m llama_cpp.server``) and use
``backend="openai"`` from every step.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from amr_dagster.llm.base import Usage
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.registry import BACKENDS, EngineSpec, loaded_cached_engine, shared_cached_engine


class LLMResource(dg.ConfigurableResource):
    """One LLM role. Defaults: the embedded Gemma 3 270M through llama.cpp, cache under the data root."""

    backend: str = "llama_cpp"
    model: str = ""  # llama_cpp: GGUF path ("" = embedded Gemma); openai/vllm: model name
    base_url: str = ""  # openai backend: e.g. http://127.0.0.1:8000/v1
    api_key: str = ""  # set with dg.EnvVar
    max_concurrency: int = 8
    max_retries: int = 5
    timeout_s: float = 120.0
    n_ctx: int = 8192
    n_threads: int = 0  # 0 = all cores
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 0
    enable_prefix_caching: bool = True
    cache_path: str = ""  # "" = <data root>/llm_cache.sqlite (S3 root: <data root>/llm_cache/); a file or s3:// prefix

    @classmethod
    def from_env(cls, role: str) -> "LLMResource":
        """A role configured from ``AMR_<ROLE>_*`` variables, falling back to ``AMR_LLM_*``.

        Read: BACKEND, MODEL, BASE_URL, MAX_CONCURRENCY, N_CTX, N_THREADS, CACHE and API_KEY
        (the key through ``dg.EnvVar``, only when the variable exists).
        """
        role = role.upper()

        def get(name: str, default: str = "") -> str:
            return os.environ.get(f"AMR_{role}_{name}") or os.environ.get(f"AMR_LLM_{name}") or default

        fields: dict[str, Any] = {
            "backend": get("BACKEND", "llama_cpp"),
            "model": get("MODEL"),
            "base_url": get("BASE_URL"),
            "cache_path": get("CACHE"),
        }
        for name, field in (("MAX_CONCURRENCY", "max_concurrency"), ("N_CTX", "n_ctx"), ("N_THREADS", "n_threads")):
            if get(name):
                fields[field] = int(get(name))
        for var in (f"AMR_{role}_API_KEY", "AMR_LLM_API_KEY"):
            if var in os.environ:
                fields["api_key"] = dg.EnvVar(var)
                break
        return cls(**fields)

    def spec(self) -> EngineSpec:
        if self.backend not in BACKENDS:
            raise ValueError(f"LLMResource.backend must be one of {BACKENDS}, got {self.backend!r}")
        api_key = self.api_key
        if isinstance(api_key, dg.EnvVar):  # used outside a run: Dagster has not resolved it
            api_key = api_key.get_value() or ""
        return EngineSpec(
            backend=self.backend,
            model=self.model,
            base_url=self.base_url,
            api_key=api_key,
            max_concurrency=self.max_concurrency,
            max_retries=self.max_retries,
            timeout_s=self.timeout_s,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_model_len=self.max_model_len,
            enable_prefix_caching=self.enable_prefix_caching,
        )

    @property
    def enabled(self) -> bool:
        return self.backend != "none"

    def engine(self) -> CachedEngine | None:
        """The shared cached engine of this role (built on first call); ``None`` for backend "none"."""
        return shared_cached_engine(self.spec(), self.cache_path or None)

    def model_id(self) -> str:
        """Identity of the model for code/data versions ("none" when disabled); loads the engine."""
        engine = self.engine()
        return engine.model_id if engine is not None else "none"

    def usage_snapshot(self) -> Usage:
        """Counters now; pair with ``usage_since`` around one materialization's LLM work.

        Never loads the model: before the engine exists the counters are all zero.
        """
        engine = loaded_cached_engine(self.spec(), self.cache_path or None)
        return engine.snapshot() if engine is not None else Usage()

    def usage_since(self, snapshot: Usage) -> dict[str, Any]:
        """Requests, tokens, cache hits/misses, errors and wall time since ``snapshot``, as metadata."""
        engine = loaded_cached_engine(self.spec(), self.cache_path or None)
        usage = engine.usage_since(snapshot) if engine is not None else Usage(model_id="none")
        return usage.as_metadata(prefix="")
