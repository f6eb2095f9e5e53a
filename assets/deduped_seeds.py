"""``deduped_seeds``: MinHash near-dedup within the batch and against every earlier batch."""


import time

import dagster as dg
import polars as pl

from amr_dagster.seeds.dedup import DedupConfig, SignatureStore, dedup_batch
from amr_dagster.outcomes import accepted
from amr_dagster.shared_state import MINHASH
from amr_dagster.schemas import DEDUPED_SEED_COLUMNS
from assets.partitions import seed_batches
from assets.stage import accepted_ids, emit, stage_checks
from resources.data_root import DataRoot


class DedupSettings(dg.Config):
    num_perm: int = 256
    threshold: float = 0.7
    shingle_size: int = 5


@dg.asset(
    partitions_def=seed_batches,
    group_name="seeds",
    kinds={"python", "parquet"},
    code_version="deduped_seeds.v1",
    check_specs=stage_checks("deduped_seeds"),
    # One batch at a time: batch N is compared against every batch deduplicated before it,
    # so the order must be a single, recorded sequence (the store's ledger).
    pool="minhash_dedup",
    description="MinHash (word 5-gram shingles, LSH) near-dedup, global across batches through stored "
    "signatures. The earliest copy survives; a rejected row names the id it duplicates.",
)
def deduped_seeds(context: dg.AssetExecutionContext, config: DedupSettings, data_root: DataRoot, filtered_seeds: pl.DataFrame):
    started = time.perf_counter()
    core = DedupConfig(num_perm=config.num_perm, threshold=config.threshold, shingle_size=config.shingle_size)
    seeds = accepted(filtered_seeds)
    # On an S3 data root this commits through the store's log and may redo the dedup after
    # another worker's commit: the batch is then compared with that worker's batch too.
    frame, stats = data_root.shared_state().update(
        MINHASH, lambda folder: dedup_batch(seeds, context.partition_key, SignatureStore(folder), core)
    )
    yield from emit(
        context,
        frame,
        expected_inputs=accepted_ids(filtered_seeds),
        input_column="id",
        schema=DEDUPED_SEED_COLUMNS,
        started=started,
        stats=stats,
    )
