"""The seed stages as the pipeline calls them: what each reads, what it must account for.

Each function takes keyword arguments only (the Dagster layer passes them by name: upstream
frames under their asset names, ``batch`` = the partition key, ``config`` = the stage's own
settings, and the shared services it names) and returns a ``StageResult``.
"""

from __future__ import annotations

from typing import Callable

import polars as pl

from amr_dagster.accounting import StageResult, accepted_ids
from amr_dagster.storage.layout import DataLayout
from amr_dagster.seeds.dedup import SignatureStore
from amr_dagster.outcomes import accepted
from amr_dagster.seeds.decontamination import Decontaminator
from amr_dagster.seeds.dedup import DedupConfig, dedup_batch
from amr_dagster.seeds.filters import FilterConfig, filter_seeds
from amr_dagster.seeds.mining import mine_batch


def mine_seed_functions(*, batch: str, data: DataLayout, decontaminator: Decontaminator) -> StageResult:
    """Every function of the batch's source files (one rejected row per unusable file)."""
    location = data.batches().resolve(batch)
    frame = mine_batch(location, batch, screen=decontaminator.check)
    files = frame.get_column("parent_id").n_unique() if frame.height else 0
    return StageResult(frame, expected_inputs=None, metrics={"source_files": files}, notes={"seed_location": str(location)})


def filter_seed_functions(
    *, seed_functions: pl.DataFrame, config: FilterConfig, decontaminator: Decontaminator, make_generator: Callable
) -> StageResult:
    """Quality rules, pyright, decontamination and (if on and an LLM is configured) the docstring judge.

    ``make_generator()`` builds the generator on first use; it is called only when the judge is on.
    """
    judge = None
    if config.docstring_judge:
        engine = make_generator()
        if engine is not None:
            from amr_dagster.seeds.docstring_judge import make_judge

            judge = make_judge(engine, mode=config.judge_mode, votes=config.judge_votes, temperature=config.judge_temperature)
    frame, stats = filter_seeds(accepted(seed_functions), config, judge=judge, decontaminator=decontaminator)
    return StageResult(
        frame, accepted_ids(seed_functions), "id", stats, metrics={"docstring_judge": int(judge is not None)},
        notes={"docstring_judge_mode": config.judge_mode},
    )


def dedup_seeds(*, filtered_seeds: pl.DataFrame, batch: str, data: DataLayout, config: DedupConfig) -> StageResult:
    """MinHash near-dedup within the batch and against every batch stored before it."""
    seeds = accepted(filtered_seeds)
    # On an S3 data root this commits through the store's log and may redo the dedup after
    # another worker's commit: the batch is then compared with that worker's batch too.
    frame, stats = data.update_minhash(lambda folder: dedup_batch(seeds, batch, SignatureStore(folder), config))
    return StageResult(frame, accepted_ids(filtered_seeds), "id", stats)
