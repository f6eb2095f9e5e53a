"""``seed_functions``: documented top-level functions mined from one seed batch."""

from amr_dagster.schemas import SEED_FUNCTION_COLUMNS
from amr_dagster.seeds.stages import mine_seed_functions
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="seed_functions",
    group="seeds",
    run=mine_seed_functions,
    deps=("seed_files",),
    schema=SEED_FUNCTION_COLUMNS,
    description="Top-level (async) functions whose first statement is a docstring, with source path, "
    "line span, name, docstring and code. Every source file yields at least one row: its functions, "
    "or one rejected row saying why it could not be used (a benchmark solution that is no seed in form "
    "is still reported as contaminated).",
)
seed_functions = stage_asset(SPEC)
