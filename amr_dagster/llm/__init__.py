"""LLM engines behind one interface, with a persistent cache and token accounting.

Stages import from here: build requests, call ``engine.generate``, read completions. Backends
(``llama_cpp_engine``, ``openai_engine``, ``vllm_engine``) are imported lazily by ``registry``.
"""

from amr_dagster.llm.base import (
    Completion,
    EngineUnavailable,
    LLMEngine,
    LLMRequest,
    SamplingParams,
    Usage,
    sample_seed,
)
from amr_dagster.llm.cache import CacheStore, MemoryCache, SQLiteCache, cache_key
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.registry import EngineSpec, shared_cached_engine, shared_engine

__all__ = [
    "CacheStore",
    "CachedEngine",
    "Completion",
    "EngineSpec",
    "EngineUnavailable",
    "LLMEngine",
    "LLMRequest",
    "MemoryCache",
    "SQLiteCache",
    "SamplingParams",
    "Usage",
    "cache_key",
    "sample_seed",
    "shared_cached_engine",
    "shared_engine",
]
