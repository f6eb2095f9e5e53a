"""Dagster resources: storage, seed location, LLM engines, sandboxes, settings.

``default_resources()`` builds them from the environment, the way hooli-data-eng keys
resources by deployment: nothing secret is read here; API keys go through ``EnvVar``.
"""

from __future__ import annotations

import os


def default_resources() -> dict[str, object]:
    from resources.benchmarks import BenchmarkSet
    from resources.data_root import DataRoot
    from resources.evolution import EvolSettings, ModuleLibraryResource
    from resources.generation import GenerationSettings
    from resources.llm import LLMResource
    from resources.parquet_io import ParquetFrameIOManager
    from resources.sandbox import SandboxResource
    from resources.seed_location import SeedLocation

    # Paths stay empty here and are read from the environment when a step runs, so one loaded
    # code location follows AMR_DATA_DIR / AMR_SEEDS_DIR of the process that executes it.
    return {
        "io_manager": ParquetFrameIOManager(),
        "data_root": DataRoot(),
        "seed_location": SeedLocation(),
        "generator": LLMResource.from_env("GENERATOR"),
        "teacher": LLMResource.from_env("TEACHER"),
        "benchmarks": BenchmarkSet.from_env(),
        "generation": GenerationSettings.from_env(),
        "evolution": EvolSettings.from_env(),
        "module_library_store": ModuleLibraryResource(),
        "sandbox": SandboxResource(backend=os.environ.get("AMR_SANDBOX_BACKEND", "auto")),
    }
