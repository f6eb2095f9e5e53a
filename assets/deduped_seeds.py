"""``deduped_seeds``: MinHash near-dedup within the batch and against every earlier batch."""

from amr_dagster.pools import MINHASH_DEDUP
from amr_dagster.schemas import DEDUPED_SEED_COLUMNS
from amr_dagster.seeds.dedup import DedupConfig
from amr_dagster.seeds.stages import dedup_seeds
from assets.stage import StageSpec, stage_asset
from resources.derived import CoreConfig, derive

DedupSettings = derive(DedupConfig, CoreConfig, name="DedupSettings")

SPEC = StageSpec(
    name="deduped_seeds",
    group="seeds",
    run=dedup_seeds,
    upstream=("filtered_seeds",),
    config=DedupSettings,
    schema=DEDUPED_SEED_COLUMNS,
    # One batch at a time: batch N is compared against every batch deduplicated before it,
    # so the order must be a single, recorded sequence (the store's ledger).
    pool=MINHASH_DEDUP,
    description="MinHash (word 5-gram shingles, LSH) near-dedup, global across batches through stored "
    "signatures. The earliest copy survives; a rejected row names the id it duplicates.",
)
deduped_seeds = stage_asset(SPEC)
