"""``filtered_seeds``: quality rules, pyright, benchmark decontamination, docstring judge."""

from amr_dagster.schemas import FILTERED_SEED_COLUMNS
from amr_dagster.seeds.filters import FilterConfig
from amr_dagster.seeds.stages import filter_seed_functions
from assets.stage import StageSpec, stage_asset
from resources.derived import CoreConfig, derive

# The decontamination settings belong to the ``benchmarks`` resource (one set for every stage).
FilterSettings = derive(
    FilterConfig, CoreConfig, name="FilterSettings",
    exclude=("benchmark_files", "ngram_n", "ngram_threshold", "exact_min_tokens", "prose_min_tokens"),
)

SPEC = StageSpec(
    name="filtered_seeds",
    group="seeds",
    run=filter_seed_functions,
    upstream=("seed_functions",),
    config=FilterSettings,
    schema=FILTERED_SEED_COLUMNS,
    kinds=("python", "parquet", "pyright"),
    description="Seeds that return a value, carry no TODO/bug markers, import nothing denied, are short, "
    "take parameters, type-check under pyright, are not benchmark problems, and whose docstring "
    "suffices to re-implement them (LLM judge). Every rejection keeps its reason.",
)
filtered_seeds = stage_asset(SPEC)
