"""``filtered_seeds``: quality rules, pyright, benchmark decontamination, docstring judge."""


import time

import dagster as dg
import polars as pl

from amr_dagster.seeds.filters import FilterConfig, filter_seeds
from amr_dagster.outcomes import accepted
from amr_dagster.schemas import FILTERED_SEED_COLUMNS
from assets.partitions import seed_batches
from assets.stage import accepted_ids, emit, stage_checks
from resources.benchmarks import BenchmarkSet
from resources.generation import GenerationSettings
from resources.llm import LLMResource


class FilterSettings(dg.Config):
    """Run config of the seed filters (defaults are the issue's)."""

    max_lines: int = 150
    denied_imports: list[str] = list(FilterConfig().denied_imports)
    typecheck: bool = True
    typecheck_timeout_s: float = FilterConfig().typecheck_timeout_s
    typecheck_batch_size: int = FilterConfig().typecheck_batch_size
    docstring_judge: bool = True
    judge_mode: str = FilterConfig().judge_mode
    judge_votes: int = FilterConfig().judge_votes
    judge_temperature: float = FilterConfig().judge_temperature


@dg.asset(
    partitions_def=seed_batches,
    group_name="seeds",
    kinds={"python", "parquet"},
    code_version="filtered_seeds.v1",
    check_specs=stage_checks("filtered_seeds"),
    description="Seeds that return a value, carry no TODO/bug markers, import nothing denied, are short, "
    "take parameters, type-check under pyright, are not benchmark problems, and whose docstring "
    "suffices to re-implement them (LLM judge). Every rejection keeps its reason.",
)
def filtered_seeds(
    context: dg.AssetExecutionContext,
    config: FilterSettings,
    generator: LLMResource,
    generation: GenerationSettings,
    benchmarks: BenchmarkSet,
    seed_functions: pl.DataFrame,
):
    started = time.perf_counter()
    candidates = accepted(seed_functions)
    overrides = {k: v for k, v in config.model_dump().items() if k != "docstring_judge"}
    core_config = generation.settings_profile().build("filters", {**overrides, "denied_imports": tuple(config.denied_imports)})
    judge = None
    if config.docstring_judge:
        engine = generator.engine()
        if engine is not None:
            from amr_dagster.seeds.docstring_judge import make_judge

            judge = make_judge(
                engine, mode=core_config.judge_mode, votes=core_config.judge_votes, temperature=core_config.judge_temperature
            )
    usage_before = generator.usage_snapshot()
    frame, stats = filter_seeds(candidates, core_config, judge=judge, decontaminator=benchmarks.decontaminator())
    yield from emit(
        context,
        frame,
        expected_inputs=accepted_ids(seed_functions),
        input_column="id",
        schema=FILTERED_SEED_COLUMNS,
        started=started,
        stats=stats,
        extra={"llm": generator.usage_since(usage_before), "docstring_judge": judge is not None, "docstring_judge_mode": core_config.judge_mode,
               "profile": generation.profile},
    )
