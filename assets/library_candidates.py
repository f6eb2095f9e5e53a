"""``library_candidates``: the verified function modules one batch offers the module library.

Two sources, both verified: the batch's documented, type-checked seed functions, and every
top-level function of its direct responses that passed their tests in the sandbox. Taking
harvested code from the *direct* executed responses (not from ``verified_pairs``, which
depends on evolution, which reads the library) is what keeps the library loop free of cycles:
deduped_seeds + executed_responses -> library_candidates -> module_library -> evolved_responses.
"""

from amr_dagster.evol.stages import library_candidates as offer_candidates
from amr_dagster.schemas import CANDIDATE_SCHEMA
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="library_candidates",
    group="amr_evol",
    run=offer_candidates,
    upstream=("deduped_seeds", "executed_responses"),
    schema=CANDIDATE_SCHEMA,
    description="Verified function modules this batch offers the library: its documented, type-checked "
    "seed functions that ran in the sandbox (or none, or all: evolution.library_seeds) and the top-level "
    "functions of direct responses that passed in the sandbox.",
)
library_candidates = stage_asset(SPEC)
