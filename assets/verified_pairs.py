"""``verified_pairs``: one execution-verified response per instruction, with lineage to its seed.

The seam for AMR-Evol: selection takes the direct (executed) responses and, when evolution
ran, the evolved responses with their own sandbox verdicts; the evolved one wins if it passed.
"""

from amr_dagster.dataset.stages import verified_pairs as select_pairs
from amr_dagster.schemas import VERIFIED_PAIR_COLUMNS
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="verified_pairs",
    group="verified",
    run=select_pairs,
    upstream=("executed_responses", "evolved_responses", "deduped_seeds"),
    schema=VERIFIED_PAIR_COLUMNS,
    description="Per instruction: the evolved response if it passed in the sandbox, else a passing direct "
    "response (seeded choice), else a rejection; syntax-checked, over-long instructions dropped with a "
    "reason; `origin` records which. Each pair carries its seed's id, file and line span.",
)
verified_pairs = stage_asset(SPEC)
