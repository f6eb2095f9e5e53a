"""``verified_pairs``: one execution-verified response per instruction, with lineage to its seed.

The seam for AMR-Evol: selection takes the direct (executed) responses and, when evolution
ran, the evolved responses with their own sandbox verdicts; the evolved one wins if it passed.
"""

import time

import dagster as dg
import polars as pl

from amr_dagster.evol.report import evol_report
from amr_dagster.dataset.selection import VERIFIED_COLUMNS, select_verified
from amr_dagster.dataset.export import DATASET_COLUMNS, attach_lineage
from amr_dagster.outcomes import REASON, STATUS
from assets.evolved_responses import report_views
from assets.partitions import seed_batches
from assets.stage import emit, stage_checks
from resources.generation import GenerationSettings

VERIFIED_SCHEMA = {
    **VERIFIED_COLUMNS,
    **{c: t for c, t in DATASET_COLUMNS.items() if c.startswith("seed_") or c in ("batch", "profile")},
}


def verify_and_trace(executed: pl.DataFrame, evolved: pl.DataFrame | None, seeds: pl.DataFrame, global_seed: int) -> tuple[pl.DataFrame, dict]:
    frame, stats = select_verified(executed, evolved, global_seed=global_seed)
    traced = attach_lineage(frame, executed, seeds)
    return traced.select([c for c in VERIFIED_SCHEMA] + [STATUS, REASON]), stats


@dg.asset(
    partitions_def=seed_batches,
    group_name="verified",
    kinds={"python", "parquet"},
    code_version="verified_pairs.v1",
    check_specs=stage_checks("verified_pairs"),
    description="Per instruction: the evolved response if it passed in the sandbox, else a passing direct "
    "response (seeded choice), else a rejection; syntax-checked, over-long instructions dropped with a "
    "reason; `origin` records which. Each pair carries its seed's id, file and line span.",
)
def verified_pairs(
    context: dg.AssetExecutionContext,
    generation: GenerationSettings,
    executed_responses: pl.DataFrame,
    evolved_responses: pl.DataFrame,
    deduped_seeds: pl.DataFrame,
):
    started = time.perf_counter()
    frame, stats = verify_and_trace(executed_responses, evolved_responses, deduped_seeds, generation.global_seed)
    parsed, executed_evolved = report_views(evolved_responses)
    stats["evolution"] = evol_report(executed_responses, parsed, executed_evolved, frame)
    instructions_in = set(executed_responses.get_column("parent_id").to_list()) if executed_responses.height else set()
    yield from emit(
        context, frame, expected_inputs=instructions_in, input_column="instruction_id",
        schema={**VERIFIED_SCHEMA, STATUS: pl.String(), REASON: pl.String()}, started=started, stats=stats,
        extra={
            "origin_evolved": stats.get("origin_evolved", 0),
            "origin_direct": stats.get("origin_direct", 0),
            "direct_pass_rate": stats["evolution"].get("direct_pass_rate"),
            "evolved_pass_rate": stats["evolution"].get("evolved_pass_rate"),
        },
    )
