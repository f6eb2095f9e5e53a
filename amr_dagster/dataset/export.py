"""``instruction_dataset``: every verified pair of every batch, deduplicated and
decontaminated once more, exported in a standard instruction/response format.

Pairs arrive partition by partition (never all at once); ``judge_batch`` judges one batch
against what earlier batches kept, ``build_dataset`` runs it over every batch from scratch and
``dataset.incremental`` keeps that state across runs, so a run judges only new batches. SelfCodeAlign's sanitizing comes
first (exact copies of an instruction or response, repeated function-name sets: ``code_keys``),
then output near-dedup runs three MinHash passes, on the instruction, the response and the
code representation (or the raw code), each in arrival order with the same
store semantics as seed dedup (a row is compared with every row kept before it), so the
result is the same on any machine. Decontamination checks instruction, response and tests
against the benchmarks again: a model can reproduce a benchmark problem from a clean seed.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from amr_dagster.storage.objectstore import LocalObjectStore, ObjectStore
from amr_dagster.schemas import DATASET_COLUMNS
from amr_dagster.dataset.code_keys import SeenPairs, code_representation
from amr_dagster.seeds.decontamination import Decontaminator
from amr_dagster.seeds.dedup import DedupConfig, SignatureStore, dedup_batch
from amr_dagster.outcomes import REASON, accepted, summarize, with_status


@dataclass(frozen=True)
class ExportConfig:
    """``exact_dedup``, ``dedup_function_names`` and ``dedup_on_code_representation`` are
    SelfCodeAlign's sanitizing rules (see ``code_keys``); the last one makes the third MinHash
    pass compare code representations instead of the raw code."""

    num_perm: int = 256
    threshold: float = 0.7
    shingle_size: int = 5
    benchmark_files: tuple[str, ...] = ()
    exact_dedup: bool = True
    dedup_function_names: bool = True
    dedup_on_code_representation: bool = True

    def dedup_fields(self) -> tuple[str, ...]:
        return ("instruction", "response", "code_representation" if self.dedup_on_code_representation else "code")


def _with_code_representation(frame: pl.DataFrame, reasons: list[str | None]) -> pl.DataFrame:
    """Add ``code_representation``; an unparsable code (never verified code) is a rejection."""
    out: list[str] = []
    for i, code in enumerate(frame.get_column("code").to_list()):
        try:
            out.append(code_representation(code or ""))
        except SyntaxError:
            out.append("")
            reasons[i] = reasons[i] or "output_code_representation: syntax error"
    return frame.with_columns(pl.Series("code_representation", out, dtype=pl.String))


def attach_lineage(pairs: pl.DataFrame, samples: pl.DataFrame, seeds: pl.DataFrame) -> pl.DataFrame:
    """Add the seed's id, name, file and line span to each pair (instruction -> seed).

    ``samples``: any frame with ``parent_id`` = instruction id and ``seed_id`` (the executed
    responses); ``seeds``: the batch's deduplicated seeds.
    """
    profile = pl.col("profile") if "profile" in samples.columns else pl.lit(None, dtype=pl.String).alias("profile")
    inst = samples.select(pl.col("parent_id").alias("instruction_id"), pl.col("seed_id"), profile).unique("instruction_id", keep="first")
    seed_cols = seeds.select(
        pl.col("id").alias("seed_id"),
        pl.col("name").alias("seed_name"),
        pl.col("source_path").alias("seed_source_path"),
        pl.col("line_start").alias("seed_line_start"),
        pl.col("line_end").alias("seed_line_end"),
        pl.col("repo").alias("seed_repo"),
        pl.col("license").alias("seed_license"),
        pl.col("batch"),
    )
    return pairs.join(inst, on="instruction_id", how="left").join(seed_cols, on="seed_id", how="left")


def dataset_rows(pairs: pl.DataFrame) -> pl.DataFrame:
    """The accepted pairs of one batch in the dataset's columns (missing ones null)."""
    rows = accepted(pairs)
    return rows.select([pl.col(c).cast(t) if c in rows.columns else pl.lit(None, dtype=t).alias(c) for c, t in DATASET_COLUMNS.items()])


def judge_batch(
    frame: pl.DataFrame,
    key: str,
    config: ExportConfig,
    decontaminator: Decontaminator,
    seen: SeenPairs,
    stores: dict[str, SignatureStore],
) -> pl.DataFrame:
    """One batch's dataset rows (``dataset_rows``) with status/reason, judged against everything
    ``seen`` and ``stores`` hold (the batches before it), which then remember its kept pairs.

    Order: decontamination, the sanitizing keys, then one MinHash pass per ``dedup_fields``.
    """
    dedup_config = DedupConfig(num_perm=config.num_perm, threshold=config.threshold, shingle_size=config.shingle_size)
    reasons: list[str | None] = [None] * frame.height
    texts = ["\n".join(filter(None, (r["instruction"], r["response"], r["tests"]))) for r in frame.iter_rows(named=True)]
    for i, hit in enumerate(decontaminator.check_many(texts)):
        reasons[i] = hit
    for i, row in enumerate(frame.iter_rows(named=True)):
        if reasons[i] is None and (config.exact_dedup or config.dedup_function_names):
            reasons[i] = seen.judge(row["instruction"], row["response"], row["code"] or "")
    scored = _with_code_representation(frame, reasons) if config.dedup_on_code_representation else frame
    for name in config.dedup_fields():
        candidates = scored.with_row_index("_row").filter(pl.Series([r is None for r in reasons], dtype=pl.Boolean))
        if candidates.is_empty():
            break
        judged, _ = dedup_batch(candidates.select("id", name), key, stores[name], dedup_config, text_column=name)
        for row_index, reason in zip(candidates.get_column("_row").to_list(), judged.get_column(REASON).to_list()):
            if reason is not None:
                reasons[row_index] = f"output_{name}_{reason}"
    return with_status(frame, reasons)


def export_stats(judged: list[pl.DataFrame], per_partition: dict[str, int], started: float) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The judged rows of every batch as one frame, and the export's numbers."""
    dataset = pl.concat(judged, how="vertical") if judged else with_status(pl.DataFrame(schema=DATASET_COLUMNS), [])
    counts = summarize(dataset)
    stats = {
        "pairs_in": sum(per_partition.values()),
        "exported": counts["accepted"],
        "rejected_by_reason": counts["rejected_by_reason"],
        "partitions": per_partition,
        "wall_s": round(time.perf_counter() - started, 3),
    }
    return dataset, stats


def build_dataset(
    partitions: Iterable[tuple[str, pl.DataFrame]],
    config: ExportConfig,
    decontaminator: Decontaminator | None = None,
    workdir: Path | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """All partitions' accepted pairs (with lineage) -> the dataset frame with status/reason,
    from scratch (the pipeline keeps the same state across runs: ``dataset.incremental``).

    ``partitions`` yields (partition key, pairs-with-lineage frame), in a fixed order.
    """
    started = time.perf_counter()
    decontaminator = decontaminator or Decontaminator.default(config.benchmark_files)
    frames: list[pl.DataFrame] = []
    per_partition: dict[str, int] = {}
    seen = SeenPairs(exact=config.exact_dedup, names=config.dedup_function_names)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="export-dedup-") as tmp:
        stores = {name: SignatureStore(Path(tmp) / name) for name in config.dedup_fields()}
        for key, pairs in partitions:
            frame = dataset_rows(pairs)
            per_partition[key] = frame.height
            if frame.height:
                frames.append(judge_batch(frame, key, config, decontaminator, seen, stores))
    return export_stats(frames, per_partition, started)


def dataset_card(
    stats: dict[str, Any],
    stage_counts: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    evolution: dict[str, Any] | None = None,
    figures: str | None = None,
) -> str:
    """A Markdown card: what the dataset holds and how it was made (``figures``: the Markdown of
    ``dataset.figures.card_section``, placed after the counts)."""
    lines = [
        "# amr-dagster instruction dataset",
        "",
        f"Execution-verified instruction/response pairs: **{stats['exported']}** exported "
        f"from {stats['pairs_in']} verified pairs across {len(stats['partitions'])} seed batches.",
        "",
        f"Settings profile: **{(settings.get('profile') or {}).get('name', 'embedded')}**"
        + (" (see Settings below)" if settings.get("profile") else ""),
        "",
        "## Counts per stage (all batches)",
        "",
        "| stage | rows | accepted | rejected | top rejection reasons |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for stage, counts in stage_counts.items():
        top = ", ".join(f"{r} ({n})" for r, n in list(counts.get("rejected_by_reason_family", {}).items())[:4])
        lines.append(f"| {stage} | {counts['rows']} | {counts['accepted']} | {counts['rejected']} | {top} |")
    if figures:
        lines += ["", figures.rstrip("\n")]
    lines += ["", "## Export filters", ""]
    for reason, n in stats["rejected_by_reason"].items():
        lines.append(f"- {reason}: {n}")
    if not stats["rejected_by_reason"]:
        lines.append("- none rejected")
    if evolution:
        lines += [
            "",
            "## Pass rates of the generator's own samples",
            "",
            f"- per sample (every sampled response, parsed or not): **{evolution.get('pass_rate_per_sample')}** "
            f"({evolution.get('direct_samples_passed')} of {evolution.get('direct_samples')})",
            f"- per parsed sample (responses that reached the sandbox): **{evolution.get('pass_rate_per_parsed_sample')}** "
            f"({evolution.get('direct_samples_passed')} of {evolution.get('direct_samples_executed')})",
        ]
        lines += ["", "## AMR-Evol", "", "```json", json.dumps(evolution, indent=2, sort_keys=True), "```"]
    lines += ["", "## Settings", "", "```json", json.dumps(settings, indent=2, sort_keys=True, default=str), "```", ""]
    return "\n".join(lines)
