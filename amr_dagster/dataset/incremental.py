"""The export kept across runs: adding a batch judges its pairs and nothing else.

``instruction_dataset`` used to re-export every batch on every run. Its state now persists in
the data root's shared folder ``export_state`` (a commit log on S3, see ``storage.shared_state``):

- ``ledger.json``: the judged batches in judging order, each with the sha256 of the
  ``verified_pairs`` file it was judged from and its export numbers; per batch (every batch with
  any stage output) a summary for the card: the stamps of its partition files, its rows /
  accepted / rejected per stage with rejection families, its AMR-Evol report; and the
  fingerprint of the export settings and benchmarks the state was built with.
- ``seen.parquet``: the 64-bit sanitizing keys of every kept pair (``code_keys.SeenPairs``),
  each with the batch that added it.
- ``signatures/<field>/``: one MinHash ``SignatureStore`` per dedup field (one file per batch).

The published export under ``instruction_dataset/`` is one shard per batch
(``data/<batch>.jsonl``, ``data/<batch>.parquet``, ``judged/<batch>.parquet``), plus the card,
its figures and ``card.json`` (whose ``shards`` lists the data files in judging order).

What a run does: list the stamps of every stage's partition files (a listing; no partition is
read), re-read only batches whose stamps changed, judge only batches whose pairs are new or
changed. New batches are judged after every judged batch, in arrival order (the seed dedup
ledger's order, the order seed batches were first deduplicated; batches it does not know,
after, by key), so batches exported one run at a time or several in one run give the same
export. A batch whose pairs changed (re-materialized) or vanished rewinds the state to just
before it and re-judges it and every batch after it, so its old contribution is replaced and
the result stays exactly what a from-scratch export in that order gives. Changed export
settings or benchmarks re-judge everything.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import polars as pl

from amr_dagster.dataset.code_keys import SeenPairs
from amr_dagster.dataset.export import ExportConfig, dataset_rows, judge_batch
from amr_dagster.evol.report import batch_report
from amr_dagster.ids import stable_id
from amr_dagster.outcomes import accepted, family_counts, summarize, with_status
from amr_dagster.schemas import DATASET_COLUMNS, PARTITIONED_STAGES
from amr_dagster.seeds.decontamination import Decontaminator
from amr_dagster.seeds.dedup import SignatureStore
from amr_dagster.storage.frames import FrameStore
from amr_dagster.storage.objectstore import ObjectStore

LEDGER, SEEN, SIGNATURES = "ledger.json", "seen.parquet", "signatures"
PAIRS = "verified_pairs"
SEEN_SCHEMA = {"batch": pl.String, "kind": pl.String, "key": pl.UInt64}


def settings_fingerprint(config: ExportConfig, decontaminator: Decontaminator) -> str:
    """What the state's judgments depend on besides the pairs: dedup settings and benchmarks."""
    d = decontaminator
    items = [(i.name, i.text, tuple(i.code_snippets), tuple(i.prose_snippets)) for i in d.items]
    return stable_id(json.dumps(asdict(config), sort_keys=True), d.n, d.ngram_threshold, d.exact_min_tokens, d.prose_min_tokens, json.dumps(items))


def batch_stamps(frames: FrameStore, stages: Iterable[str] = PARTITIONED_STAGES) -> dict[str, dict[str, str]]:
    """batch -> {stage: stamp of its Parquet file}: one listing per stage, nothing read."""
    out: dict[str, dict[str, str]] = {}
    for stage in stages:
        for batch, stamp in frames.stamps(stage).items():
            out.setdefault(batch, {})[stage] = stamp
    return out


def stage_summary(frame: pl.DataFrame) -> dict[str, Any]:
    """Rows/accepted/rejected of one stage frame with its rejections by family."""
    counts = summarize(frame)
    return {"rows": counts["rows"], "accepted": counts["accepted"], "rejected": counts["rejected"],
            "families": family_counts(counts["rejected_by_reason"])}


def sum_stages(summaries: Iterable[dict[str, Any]], stages: Iterable[str] = PARTITIONED_STAGES) -> dict[str, dict[str, Any]]:
    """The card's counts per stage over every batch, from the batches' summaries."""
    totals = {stage: {"rows": 0, "accepted": 0, "rejected": 0, "families": {}} for stage in stages}
    for summary in summaries:
        for stage, counts in summary["stages"].items():
            total = totals.setdefault(stage, {"rows": 0, "accepted": 0, "rejected": 0, "families": {}})
            for key in ("rows", "accepted", "rejected"):
                total[key] += counts[key]
            for family, n in counts["families"].items():
                total["families"][family] = total["families"].get(family, 0) + n
    return {
        stage: {"rows": t["rows"], "accepted": t["accepted"], "rejected": t["rejected"], "rejected_by_reason_family": family_counts(t["families"])}
        for stage, t in totals.items()
    }


@dataclass
class BatchRead:
    """One batch's partitions as read for the state: its card summary and its pairs."""

    summary: dict[str, Any]
    pairs_sha: str | None = None
    pairs: pl.DataFrame | None = None


def read_batch(frames: FrameStore, batch: str, stamps: dict[str, str]) -> BatchRead:
    """Read every stage of one batch once: counts per stage, the AMR-Evol report, the pairs."""
    loaded: dict[str, pl.DataFrame] = {}
    sha = None
    for stage in stamps:
        data = frames.objects.get(FrameStore.key(stage, batch))
        if data is None:
            continue
        if stage == PAIRS:
            sha = hashlib.sha256(data).hexdigest()
        loaded[stage] = pl.read_parquet(io.BytesIO(data))
    evolution = None
    if PAIRS in loaded and "evolved_responses" in loaded and "executed_responses" in loaded:
        samples = loaded["responses"].height if "responses" in loaded else None
        evolution = batch_report(loaded["executed_responses"], loaded["evolved_responses"], loaded[PAIRS], samples)
    summary = {"stamps": stamps, "stages": {s: stage_summary(f) for s, f in loaded.items()}, "evolution": evolution}
    return BatchRead(json.loads(json.dumps(summary, default=str)), sha, loaded.get(PAIRS))


@dataclass
class ExportUpdate:
    """What one ``ExportState.update`` did (for metadata and the card)."""

    judged: list[str] = field(default_factory=list)  # batches judged this time, in order
    removed: list[str] = field(default_factory=list)
    summarized: list[str] = field(default_factory=list)  # batches whose card summary was re-read
    rewound_to: int | None = None  # ledger position the state was rewound to (None: appended only)
    rebuilt: bool = False  # settings changed: everything re-judged


class ExportState:
    """The export's persistent state in ``folder`` (see the module docstring)."""

    def __init__(self, folder: Path, config: ExportConfig, decontaminator: Decontaminator) -> None:
        self.folder = Path(folder)
        self.config = config
        self.decontaminator = decontaminator
        self.fingerprint = settings_fingerprint(config, decontaminator)

    # ------------------------------------------------------------------ stored state

    def load(self) -> dict[str, Any]:
        path = self.folder / LEDGER
        state = json.loads(path.read_text()) if path.is_file() else None
        if state is None or state.get("settings") != self.fingerprint:
            return {"settings": self.fingerprint, "batches": [], "summaries": (state or {}).get("summaries", {}), "fresh": state is not None}
        return state

    def stores(self) -> dict[str, SignatureStore]:
        return {name: SignatureStore(self.folder / SIGNATURES / name) for name in self.config.dedup_fields()}

    def _seen(self, batches: set[str]) -> pl.DataFrame:
        path = self.folder / SEEN
        frame = pl.read_parquet(path) if path.is_file() else pl.DataFrame(schema=SEEN_SCHEMA)
        return frame.filter(pl.col("batch").is_in(list(batches)))

    # ------------------------------------------------------------------ the update

    def update(self, frames: FrameStore, out: ObjectStore, arrival: list[str], stamps: dict[str, dict[str, str]] | None = None) -> tuple[dict[str, Any], ExportUpdate]:
        """Bring the state and the published shards up to date with the frame store.

        ``arrival``: the order new batches are judged in (``DataLayout.arrival_order``); ``stamps``:
        ``batch_stamps(frames)`` when the caller listed them already.
        """
        stamps = batch_stamps(frames) if stamps is None else stamps
        with _locked(self.folder):  # two runs on one machine judge one after the other
            return self._update(frames, out, arrival, stamps)

    def _update(self, frames: FrameStore, out: ObjectStore, arrival: list[str], stamps: dict[str, dict[str, str]]) -> tuple[dict[str, Any], ExportUpdate]:
        state = self.load()
        report = ExportUpdate(rebuilt=bool(state.pop("fresh", False)))
        if report.rebuilt or not state["batches"]:
            shutil.rmtree(self.folder / SIGNATURES, ignore_errors=True)
            (self.folder / SEEN).unlink(missing_ok=True)
        summaries: dict[str, Any] = {b: s for b, s in state["summaries"].items() if b in stamps}
        reads: dict[str, BatchRead] = {}
        for batch, stage_stamps in sorted(stamps.items()):
            if (summaries.get(batch) or {}).get("stamps") != stage_stamps:
                reads[batch] = read_batch(frames, batch, stage_stamps)
                summaries[batch] = reads[batch].summary
                report.summarized.append(batch)

        entries: list[dict[str, Any]] = state["batches"]
        position = {entry["batch"]: i for i, entry in enumerate(entries)}
        has_pairs = {b for b, s in stamps.items() if PAIRS in s}
        report.removed = [e["batch"] for e in entries if e["batch"] not in has_pairs]
        changed = [b for b in reads if b in position and reads[b].pairs_sha != entries[position[b]]["pairs_sha"]]
        first = min([position[b] for b in report.removed + changed], default=len(entries))
        if first < len(entries):
            report.rewound_to = first
        rank = {b: i for i, b in enumerate(arrival)}
        new = sorted(has_pairs - set(position), key=lambda b: (rank.get(b, len(rank)), b))
        todo = [e["batch"] for e in entries[first:] if e["batch"] in has_pairs] + new

        kept = entries[:first]
        keep = {e["batch"] for e in kept}
        seen_frame = self._seen(keep)
        seen = SeenPairs(self.config.exact_dedup, self.config.dedup_function_names, seen_frame.select("kind", "key").iter_rows())
        stores = self.stores()
        for store in stores.values():
            store.retain(keep)
        added: list[pl.DataFrame] = [seen_frame]
        for batch in todo:
            read = reads.get(batch) or read_batch(frames, batch, {PAIRS: stamps[batch][PAIRS]})
            rows = dataset_rows(read.pairs if read.pairs is not None else pl.DataFrame())
            before = len(seen.added)
            judged = judge_batch(rows, batch, self.config, self.decontaminator, seen, stores) if rows.height else with_status(rows, [])
            keys = seen.added[before:]
            added.append(pl.DataFrame({"batch": [batch] * len(keys), "kind": [k for k, _ in keys], "key": [v for _, v in keys]}, schema=SEEN_SCHEMA))
            counts = summarize(judged)
            kept.append({
                "batch": batch, "pairs_sha": read.pairs_sha, "pairs_in": rows.height, "judged": counts["rows"],
                "exported": counts["accepted"], "rejected_by_reason": counts["rejected_by_reason"],
            })
            write_shards(out, batch, judged)
            report.judged.append(batch)
        for batch in report.removed:
            delete_shards(out, batch)
        if report.judged or report.removed or report.summarized or not (self.folder / LEDGER).is_file():
            _atomic(self.folder / SEEN, lambda tmp: pl.concat(added).write_parquet(tmp))
            state = {"settings": self.fingerprint, "batches": kept, "summaries": dict(sorted(summaries.items()))}
            # compact: the C encoder (with indent json falls back to a ~10x slower Python one)
            _atomic(self.folder / LEDGER, lambda tmp: tmp.write_text(json.dumps(state, separators=(",", ":"), sort_keys=True)))
        return {"settings": self.fingerprint, "batches": kept, "summaries": summaries}, report


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (a dot file: never published by a shared folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _atomic(path: Path, write) -> None:
    from amr_dagster.evol.module_index import atomic_write

    atomic_write(path, write)


# ---------------------------------------------------------------------- published shards


def shard_names(batch: str) -> dict[str, str]:
    return {"jsonl": f"data/{batch}.jsonl", "parquet": f"data/{batch}.parquet", "judged": f"judged/{batch}.parquet"}


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def write_shards(out: ObjectStore, batch: str, judged: pl.DataFrame) -> None:
    """One batch's accepted records (JSONL, Parquet) and every judged row, each written whole."""
    records = accepted(judged).select(list(DATASET_COLUMNS)) if judged.height else pl.DataFrame(schema=DATASET_COLUMNS)
    names = shard_names(batch)
    out.put(names["jsonl"], "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in records.iter_rows(named=True)).encode("utf-8"))
    out.put(names["parquet"], _parquet(records))
    out.put(names["judged"], _parquet(judged))


def delete_shards(out: ObjectStore, batch: str) -> None:
    for name in shard_names(batch).values():
        out.delete(name)


def read_dataset(out: ObjectStore, batches: Iterable[str], kind: str = "parquet") -> pl.DataFrame:
    """The exported records (``kind="judged"``: every judged row) of ``batches``, in that order
    (``card.json``'s ``stats.partitions`` lists every batch in judging order)."""
    frames = [pl.read_parquet(io.BytesIO(data)) for b in batches if (data := out.get(shard_names(b)[kind])) is not None]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=DATASET_COLUMNS)
