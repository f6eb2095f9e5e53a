"""The AMR-Evol stages as the pipeline calls them: decomposition, the batch's library
candidates, committing them to the library, and evolution with retrieval.

Keyword arguments only, passed by name by the Dagster layer (see ``amr_dagster.seeds.stages``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import polars as pl

from amr_dagster.accounting import StageResult, accepted_ids, column_values
from amr_dagster.storage.layout import DataLayout
from amr_dagster.evol.config import EvolConfig
from amr_dagster.evol.decomposition import decomposed_modules, retrieval_queries
from amr_dagster.evol.direct import choose_direct
from amr_dagster.evol.evolution import evolve_responses
from amr_dagster.evol.admission import admit_seeds
from amr_dagster.evol.candidates import from_seed_rows, from_verified_code
from amr_dagster.evol.module_index import atomic_write
from amr_dagster.evol.module_library import ModuleLibrary
from amr_dagster.generation.execution import execute_responses
from amr_dagster.llm.base import LLMEngine
from amr_dagster.outcomes import ACCEPTED, REASON, REJECTED, STATUS, accepted
from amr_dagster.sandbox.base import Limits, Sandbox, Status
from amr_dagster.schemas import CANDIDATE_SCHEMA, VERDICT_COLUMNS


def decompose(*, executed_responses: pl.DataFrame, teacher: LLMEngine, evolution: EvolConfig) -> StageResult:
    """Function modules of each instruction's direct response (every instruction yields a row)."""
    frame, stats = decomposed_modules(executed_responses, teacher, evolution)
    return StageResult(frame, column_values(executed_responses, "parent_id"), "instruction_id", stats)


def passing(executed: pl.DataFrame) -> pl.DataFrame:
    """Executed samples that passed their tests in the sandbox."""
    return executed.filter(pl.col("sandbox_status") == Status.PASSED.value) if executed.height else executed


def batch_candidates(seeds: pl.DataFrame, executed: pl.DataFrame, batch: str) -> pl.DataFrame:
    """Candidates from accepted seeds and from passing executed samples (one or more rows each)."""
    frames = [from_seed_rows(accepted(seeds), batch=batch)] if seeds.height else []
    for row in passing(executed).select("id", "code").iter_rows(named=True):
        frames.append(from_verified_code(row["code"] or "", parent_id=row["id"], batch=batch))
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=CANDIDATE_SCHEMA)


def library_candidates(
    *, deduped_seeds: pl.DataFrame, executed_responses: pl.DataFrame, batch: str, evolution: EvolConfig, sandbox: Sandbox, limits: Limits
) -> StageResult:
    """What the batch offers the library: its accepted seeds (admitted by
    ``evolution.library_seeds``: run in the sandbox first by default) and its passing direct code."""
    frame = batch_candidates(deduped_seeds, executed_responses, batch)
    mode = evolution.library_seeds
    frame, admission = admit_seeds(frame, mode, sandbox if mode == "executed" and frame.height else None, limits)
    inputs = accepted_ids(deduped_seeds) | column_values(passing(executed_responses), "id")
    by_source = dict(frame.group_by("source").len().iter_rows()) if frame.height else {}
    return StageResult(
        frame, inputs, metrics={f"candidates_{source}": n for source, n in by_source.items()},
        notes={"by_source": by_source, "admission": admission},
    )


LIBRARY_INPUTS = "inputs.json"  # in the library folder: batch -> stamp of the candidates file it committed


def committed_inputs(folder: Path) -> dict[str, str]:
    """batch -> stamp of the ``library_candidates`` file the library last committed for it."""
    path = folder / LIBRARY_INPUTS
    return json.loads(path.read_text()) if path.is_file() else {}


def commit_batch(folder: Path, library: ModuleLibrary, candidates: pl.DataFrame, batch: str, stamp: str):
    """Add one batch to the library in ``folder`` and record the candidates file it came from."""
    result = library.add_batch(candidates, batch=batch)
    inputs = {**committed_inputs(folder), batch: stamp}
    atomic_write(folder / LIBRARY_INPUTS, lambda tmp: tmp.write_text(json.dumps(dict(sorted(inputs.items())), indent=1)))
    return result


def grow_library(*, data: DataLayout, open_library: Callable[[Path], ModuleLibrary]) -> StageResult:
    """Commit the candidates of every new or changed batch, one snapshot per batch, in order.

    Incremental: one listing of ``library_candidates`` says which batches' files changed since
    the library committed them (``inputs.json``); only those are read, in arrival order (the
    order seed dedup first saw them, then by key), so a batch costs the same whatever came
    before it. A batch committed again with the same candidates reuses its snapshot.

    Check ``candidates_accounted``: every candidate of a newly committed batch has an outcome
    (added, or rejected with a reason such as a near-copy of an existing entry). Each batch is
    one ordered commit of the data root's shared state: across workers the snapshots form one
    order (a worker that loses the race redoes the batch on top of the winner's snapshot).
    """
    frames = data.frames()
    stamps = frames.stamps("library_candidates")
    known = committed_inputs(data.library_dir())
    rank = {b: i for i, b in enumerate(data.arrival_order())}
    todo = sorted((b for b in stamps if known.get(b) != stamps[b]), key=lambda b: (rank.get(b, len(rank)), b))
    committed: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for batch in todo:
        candidates = frames.read("library_candidates", batch)
        result = data.update_library(lambda folder: commit_batch(folder, open_library(folder), candidates, batch, stamps[batch]))
        if result.reused:
            continue
        outcomes = result.outcomes
        if outcomes.height != candidates.height:
            problems.append(f"{batch}: {candidates.height} candidates but {outcomes.height} outcomes")
        unexplained = outcomes.filter((pl.col(STATUS) == REJECTED) & pl.col(REASON).is_null()).height
        if unexplained:
            problems.append(f"{batch}: {unexplained} rejected candidates without a reason")
        committed[batch] = {
            "snapshot": result.snapshot.snapshot_id,
            "added": result.snapshot.added,
            "candidates": outcomes.height,
            "rejected_by_reason": dict(outcomes.filter(outcomes[STATUS] == REJECTED).group_by(REASON).len().iter_rows()),
        }
    summary = open_library(data.library_dir()).summary()
    return StageResult(
        None,
        metrics={"entries": summary["entries"], "batches_committed": len(committed), "added": sum(c["added"] for c in committed.values()),
                 "batches_read": len(todo)},
        notes={
            "latest_snapshot": summary["latest_snapshot"], "by_source": summary["by_source"], "index": summary["index"],
            "embedding_model": summary["model_id"], "committed_batches": committed,
        },
        checks={"candidates_accounted": (not problems, {"problems": problems})},
    )


def retrieval_snapshot(library: ModuleLibrary, batch: str) -> str:
    """The snapshot this batch committed (the latest one if it never contributed)."""
    own = library.snapshot_for_batch(batch)
    return (own or library.latest_snapshot()).snapshot_id


def without_own_code(retrieved: pl.DataFrame, queries: pl.DataFrame, entries: pl.DataFrame, executed: pl.DataFrame, k: int) -> pl.DataFrame:
    """Drop library entries harvested from the querying instruction's own samples; keep the best k."""
    instruction_of_sample = dict(zip(executed.get_column("id").to_list(), executed.get_column("parent_id").to_list()))
    source_instruction = {
        entry: instruction_of_sample.get(parent)
        for entry, parent in zip(entries.get_column("module_id").to_list(), entries.get_column("parent_id").to_list())
    }
    instruction_of_query = dict(zip(queries.get_column("query_id").to_list(), queries.get_column("instruction_id").to_list()))
    kept = [
        [e for e in hits if source_instruction.get(e["entry_id"]) != instruction_of_query.get(query)][:k]
        for query, hits in zip(retrieved.get_column("query_id").to_list(), retrieved.get_column("retrieved").to_list())
    ]
    return retrieved.with_columns(pl.Series("retrieved", kept, dtype=retrieved.schema["retrieved"]))


def run_evolution(
    *,
    executed: pl.DataFrame,
    modules: pl.DataFrame,
    library: ModuleLibrary,
    batch: str,
    engine: LLMEngine,
    sandbox: Sandbox,
    limits: Limits,
    config: EvolConfig,
) -> tuple[pl.DataFrame, dict[str, Any], pl.DataFrame]:
    """Retrieve, evolve and execute: (evolved rows with verdicts, stats, the direct responses)."""
    direct = choose_direct(executed, config.global_seed)
    snapshot = retrieval_snapshot(library, batch)
    retrieved = None
    if config.use_retrieval:
        queries = retrieval_queries(direct, modules, config)
        if queries.height:
            hits = library.retrieve_for_queries(queries, 2 * config.top_k + 2, snapshot=snapshot)
            retrieved = without_own_code(hits, queries, library.entries(snapshot), executed, config.top_k)
    evolved, stats = evolve_responses(direct, modules, retrieved, engine, config, library_snapshot=snapshot if config.use_retrieval else None)
    executed_evolved, run_stats = execute_responses(evolved, sandbox, limits, label="evolved_responses: sandbox")
    untouched = evolved.filter(pl.col(STATUS) != ACCEPTED).with_columns([pl.lit(None, dtype=t).alias(c) for c, t in VERDICT_COLUMNS.items()])
    frame = pl.concat([executed_evolved.select(untouched.columns), untouched], how="vertical") if executed_evolved.height else untouched
    stats.update({"sandbox": run_stats, "library_snapshot": snapshot, "instructions_with_direct": direct.filter(pl.col(STATUS) == ACCEPTED).height})
    return frame, stats, direct


def evolve(
    *, executed_responses: pl.DataFrame, decomposed_modules: pl.DataFrame, library: ModuleLibrary, batch: str,
    teacher: LLMEngine, sandbox: Sandbox, limits: Limits, evolution: EvolConfig,
) -> StageResult:
    """The ``evolved_responses`` stage: every instruction with a direct response gets one row."""
    frame, stats, direct = run_evolution(
        executed=executed_responses, modules=decomposed_modules, library=library, batch=batch,
        engine=teacher, sandbox=sandbox, limits=limits, config=evolution,
    )
    expected = column_values(direct.filter(pl.col(STATUS) == ACCEPTED), "direct_id")
    return StageResult(
        frame, expected, stats=stats,
        metrics={"pass_rate": stats["sandbox"].get("pass_rate", 0.0)} if "pass_rate" in stats["sandbox"] else {},
        notes={"library_snapshot": stats["library_snapshot"]},
    )
