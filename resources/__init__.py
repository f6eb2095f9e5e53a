"""Dagster resources: the data root, seed location, LLM roles, sandbox, benchmarks, settings.

``default_resources()`` reads nothing from the environment: every resource starts from the
core's defaults, and a run's resource config (the CLI, the launchpad, a sensor's or schedule's
run request) sets what differs, so the run's config shows it. Deployment values a field leaves
empty (data root, LLM endpoints and keys, sandbox backend) are resolved where the step runs,
like ``dg.EnvVar`` (see each resource).
"""

from __future__ import annotations


def default_resources() -> dict[str, object]:
    from resources.benchmarks import BenchmarkSet
    from resources.data_root import DataRoot
    from resources.evolution import EvolSettings, ModuleLibraryResource
    from resources.generation import GenerationSettings
    from resources.llm import LLMResource
    from resources.parquet_io import parquet_frames
    from resources.sandbox import SandboxResource
    from resources.seed_location import SeedLocation

    return {
        "io_manager": parquet_frames,
        "data_root": DataRoot(),
        "seed_location": SeedLocation(),
        "generator": LLMResource(role="generator"),
        "teacher": LLMResource(role="teacher"),
        "benchmarks": BenchmarkSet(),
        "generation": GenerationSettings(),
        "evolution": EvolSettings(),
        "module_library_store": ModuleLibraryResource(),
        "sandbox": SandboxResource(),
    }
