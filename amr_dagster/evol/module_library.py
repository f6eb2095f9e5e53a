"""The functional-module library of AMR-Evol: verified functions, embedded, retrievable, versioned.

Entries are function modules that were verified before they got in (``amr_dagster.evol.candidates``:
documented, type-checked seed functions and functions harvested from responses that passed
their tests in the sandbox), each with its provenance (source, batch, parent row id, how it
was verified). How a function is cut into parts and turned into text: ``amr_dagster.evol.functions``.

Growth happens in batches. Every ``add_batch`` commits a new immutable *snapshot*: the library
state after that batch, named ``v<seq>-<hash>``. Entries are append-only and numbered in order,
so a snapshot is a prefix of the entries and ``retrieve(..., snapshot=s)`` sees exactly what was
added at or before ``s``. The intended loop: batch N's evolution retrieves from the latest
snapshot committed before batch N started and records its id; reruns pass that id back and see
the same modules, however much the library has grown since.

A candidate whose embedding has cosine >= ``novelty_threshold`` with an existing entry (or an
earlier candidate of the same batch) is not added; its outcome row names the entry it duplicates.

What is embedded: for an entry, ``module_text`` of its signature (which starts with its name),
its description (the docstring, empty if none) and its body without the docstring; for a query,
the decomposed module's signature and description (``query_text``). The model reads 256 tokens;
signature and description come first, so it is the tail of a long body that gets cut.

A commit that crashes half-way is invisible: the library reopens at its last manifest and the
index at the matching prefix of its segments; the retried batch rewrites the same file names.

Storage under ``root`` (``DataLayout.library_dir()``):
``library.json`` (snapshots, model id; replaced atomically, written last), ``entries/<snapshot>.parquet``
(metadata of the entries each snapshot added), ``outcomes/<snapshot>.parquet`` (every candidate
of the batch with its accept/reject reason) and ``index/`` (vectors and the ANN index). Writers
hold a file lock, so two processes cannot commit interleaved snapshots.
"""

from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import polars as pl

from amr_dagster.evol.embeddings import Embedder
from amr_dagster.evol.functions import query_text
from amr_dagster.evol.module_index import ModuleIndex, atomic_write
from amr_dagster.ids import stable_id
from amr_dagster.outcomes import ACCEPTED, REASON, REJECTED, STATUS
from amr_dagster.schemas import CANDIDATE_SCHEMA, ENTRY_COLUMNS, ENTRY_SCHEMA, RETRIEVED_LIST

FORMAT_VERSION = 1
MANIFEST = "library.json"
EMPTY_SNAPSHOT = "v0000-empty"
NOVELTY_THRESHOLD = 0.95



# --------------------------------------------------------------------------- the library


@dataclass(frozen=True)
class Snapshot:
    """The library after one ``add_batch``: entries [0, entries) are visible in it."""

    snapshot_id: str
    seq: int
    batch: str | None
    entries: int
    added: int
    content_hash: str


@dataclass(frozen=True)
class AddResult:
    snapshot: Snapshot
    outcomes: pl.DataFrame  # every candidate: status, reject_reason, nearest entry + similarity
    reused: bool  # the same batch with the same candidates was already committed


@dataclass
class _Greedy:
    kept: list[int]
    dropped_by: dict[int, tuple[int, float]]


_EMPTY = Snapshot(EMPTY_SNAPSHOT, 0, None, 0, 0, "")


class ModuleLibrary:
    """Verified function modules with embeddings, append-only, served per snapshot."""

    def __init__(
        self,
        root: Path | str,
        embedder: Embedder,
        *,
        novelty_threshold: float = NOVELTY_THRESHOLD,
        exact_below: int = 50_000,
        nprobe: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.embedder = embedder
        self.novelty_threshold = novelty_threshold
        self._exact_below = exact_below
        self._nprobe = nprobe
        self._manifest: dict[str, Any] | None = None
        self._index: ModuleIndex | None = None
        self._entries: pl.DataFrame | None = None
        self._loaded_snapshots = -1
        self._refresh()

    # ------------------------------------------------------------------ state

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.root / MANIFEST
        if not path.exists():
            return None
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported library format {manifest.get('format')}")
        if manifest["model_id"] != self.embedder.model_id:
            raise ValueError(
                f"{self.root} was built with embedding model {manifest['model_id']!r}; "
                f"refusing to mix it with {self.embedder.model_id!r}"
            )
        return manifest

    def _refresh(self) -> None:
        """Pick up snapshots committed by another process since we last looked."""
        manifest = self._read_manifest()
        snapshots = manifest["snapshots"] if manifest else []
        if len(snapshots) == self._loaded_snapshots:
            return
        self._manifest = manifest
        self._entries = None
        count = snapshots[-1]["entries"] if snapshots else 0
        index_dir = self.root / "index"
        self._index = ModuleIndex.load(index_dir, count=count) if count else None
        self._loaded_snapshots = len(snapshots)

    def _dim(self) -> int:
        return int(self._manifest["dim"]) if self._manifest else int(self.embedder.dim)

    @property
    def index(self) -> ModuleIndex:
        """The vector index (created empty on first use, so opening a library loads no model)."""
        if self._index is None:
            self._index = ModuleIndex(self._dim(), exact_below=self._exact_below, nprobe=self._nprobe)
        return self._index

    def snapshots(self) -> list[Snapshot]:
        """Every committed snapshot, oldest first (the empty library ``v0000-empty`` first)."""
        self._refresh()
        rows = self._manifest["snapshots"] if self._manifest else []
        keys = Snapshot.__dataclass_fields__
        return [_EMPTY] + [Snapshot(**{k: v for k, v in row.items() if k in keys}) for row in rows]

    def latest_snapshot(self) -> Snapshot:
        return self.snapshots()[-1]

    def snapshot(self, snapshot_id: str | None = None) -> Snapshot:
        """The snapshot with this id (the latest when None); KeyError if there is none."""
        snapshots = self.snapshots()
        if snapshot_id is None:
            return snapshots[-1]
        for snap in snapshots:
            if snap.snapshot_id == snapshot_id:
                return snap
        raise KeyError(f"no snapshot {snapshot_id!r} in {self.root}")

    def snapshot_for_batch(self, batch: str) -> Snapshot | None:
        """The latest snapshot that committed ``batch`` (None if it was never added)."""
        found = [s for s in self.snapshots() if s.batch == batch]
        return found[-1] if found else None

    def __len__(self) -> int:
        return self.latest_snapshot().entries

    def summary(self) -> dict[str, Any]:
        """What asset metadata shows about the library: size, sources, snapshot, model, index."""
        rows = (self._manifest or {}).get("snapshots", [])
        if all("by_source" in row for row in rows):  # kept per snapshot: no entry file is read
            counts: dict[str, int] = {}
            for row in rows:
                for source, n in row["by_source"].items():
                    counts[source] = counts.get(source, 0) + n
            by_source = dict(sorted(counts.items()))
        else:  # a library written before snapshots recorded their sources
            entries = self._all_entries()
            by_source = dict(entries.group_by("source").len().sort("source").iter_rows()) if entries.height else {}
        latest = self.latest_snapshot()
        return {
            "entries": latest.entries,
            "by_source": by_source,
            "snapshots": latest.seq,
            "latest_snapshot": latest.snapshot_id,
            "model_id": self.embedder.model_id,
            "index": "ivf" if self._index is not None and self._index.uses_ann else "exact",
        }

    def entries(self, snapshot: str | None = None) -> pl.DataFrame:
        """Entry metadata (no vectors) visible in a snapshot, in position order."""
        snap = self.snapshot(snapshot)
        return self._all_entries().head(snap.entries)

    def _all_entries(self) -> pl.DataFrame:
        if self._entries is None:
            files = [self.root / s["entries_file"] for s in (self._manifest or {}).get("snapshots", []) if s["entries_file"]]
            frames = [pl.read_parquet(f) for f in files]
            self._entries = pl.concat(frames) if frames else pl.DataFrame(schema=ENTRY_SCHEMA)
        return self._entries

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """Stored embeddings of entries at the given positions."""
        positions = np.asarray(positions, dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        out = np.empty((len(positions), self._dim()), dtype=np.float32)
        out[order] = self.index.rows_at(positions[order])
        return out

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ growing

    def add_batch(self, candidates: pl.DataFrame, *, batch: str, embed_batch_size: int = 64) -> AddResult:
        """Commit the novel accepted candidates of one batch as a new snapshot.

        Rejected candidates stay rejected; accepted ones are rejected as ``duplicate: <id>``
        (same code already in the library or earlier in the batch) or ``near_duplicate: <id>
        (cos 0.97)`` (embedding too close). Committing the same batch with the same candidates
        again returns the snapshot it already made.
        """
        candidates = candidates.select(list(CANDIDATE_SCHEMA)).cast(CANDIDATE_SCHEMA)
        content_hash = stable_id(
            batch, self.novelty_threshold, *candidates.select(pl.concat_str(["module_id", STATUS, "parent_id"], ignore_nulls=True)).to_series().sort().to_list()
        )
        with self._writer_lock():
            self._refresh()
            for snap in reversed(self.snapshots()[1:]):
                if snap.batch == batch and snap.content_hash == content_hash:
                    return AddResult(snap, pl.read_parquet(self.root / "outcomes" / f"{snap.snapshot_id}.parquet"), True)
            return self._commit(candidates, batch, content_hash, embed_batch_size)

    def _commit(self, candidates: pl.DataFrame, batch: str, content_hash: str, embed_batch_size: int) -> AddResult:
        previous = self.latest_snapshot()
        n = candidates.height
        reasons: list[str | None] = candidates.get_column(REASON).to_list()
        nearest_id: list[str | None] = [None] * n
        nearest_sim: list[float | None] = [None] * n
        module_ids = candidates.get_column("module_id").to_list()

        existing = self._all_entries().get_column("module_id")
        existing_ids = dict(zip(existing.to_list(), range(existing.len())))
        seen: set[str] = set()
        for i, module_id in enumerate(module_ids):
            if reasons[i] is not None:
                continue
            if module_id in existing_ids or module_id in seen:
                reasons[i] = f"duplicate: {module_id}"
                nearest_id[i], nearest_sim[i] = module_id, 1.0
            seen.add(module_id)

        todo = [i for i in range(n) if reasons[i] is None]
        texts = candidates.get_column("embed_text").to_list()
        vectors = self.embedder.embed([texts[i] for i in todo], batch_size=embed_batch_size)
        keep = np.ones(len(todo), dtype=bool)
        if len(todo) and len(self.index):
            hits = self.index.search(vectors, 1)
            all_ids = self._all_entries().get_column("module_id")
            for row, i in enumerate(todo):
                if hits.ids[row, 0] < 0:
                    continue
                closest, sim = all_ids[int(hits.ids[row, 0])], float(hits.similarities[row, 0])
                nearest_id[i], nearest_sim[i] = closest, sim
                if sim >= self.novelty_threshold:
                    reasons[i] = f"near_duplicate: {closest} (cos {sim:.3f})"
                    keep[row] = False
        # within the batch: greedily keep a candidate unless an earlier kept one is too close
        greedy = self._greedy_novel(vectors, keep)
        for row, (other_row, sim) in greedy.dropped_by.items():
            i, other = todo[row], module_ids[todo[other_row]]
            reasons[i] = f"near_duplicate: {other} (cos {sim:.3f})"
            previous_best = nearest_sim[i]
            if previous_best is None or sim > previous_best:
                nearest_id[i], nearest_sim[i] = other, sim
        kept_rows = greedy.kept

        added_idx = [todo[row] for row in kept_rows]
        seq = previous.seq + 1
        snapshot_id = f"v{seq:04d}-{stable_id(previous.snapshot_id, batch, *[module_ids[i] for i in added_idx], length=8)}"
        start = previous.entries
        added = (
            candidates.with_row_index("_row")
            .filter(pl.col("_row").is_in(added_idx))
            .select(ENTRY_COLUMNS)
            .with_columns(
                pl.Series("position", range(start, start + len(added_idx)), dtype=pl.Int64),
                pl.lit(snapshot_id).alias("added_in_snapshot"),
            )
        )
        outcomes = (
            candidates.with_columns(
                pl.Series(REASON, reasons, dtype=pl.String),
                pl.Series("nearest_module_id", nearest_id, dtype=pl.String),
                pl.Series("nearest_similarity", nearest_sim, dtype=pl.Float64),
            )
            .with_columns(
                pl.when(pl.col(REASON).is_null()).then(pl.lit(ACCEPTED)).otherwise(pl.lit(REJECTED)).alias(STATUS),
                pl.lit(snapshot_id).alias("snapshot_id"),
            )
        )

        # Write order: data files first, the manifest last (the commit point).
        entries_file = None
        if added.height:
            entries_file = f"entries/{snapshot_id}.parquet"
            atomic_write(self.root / entries_file, lambda tmp: added.write_parquet(tmp))
            self.index.add(vectors[kept_rows])
            self.index.save(self.root / "index")
        atomic_write(self.root / "outcomes" / f"{snapshot_id}.parquet", lambda tmp: outcomes.write_parquet(tmp))
        snapshot = Snapshot(snapshot_id, seq, batch, start + added.height, added.height, content_hash)
        manifest = self._manifest or {
            "format": FORMAT_VERSION,
            "model_id": self.embedder.model_id,
            "dim": int(vectors.shape[1]) if vectors.size else self._dim(),
            "snapshots": [],
        }
        manifest["snapshots"].append(
            {
                **snapshot.__dict__,
                "entries_file": entries_file,
                "by_source": dict(added.group_by("source").len().sort("source").iter_rows()) if added.height else {},
                "novelty_threshold": self.novelty_threshold,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        atomic_write(self.root / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
        self._manifest = manifest
        self._loaded_snapshots = len(manifest["snapshots"])
        if added.height:
            self._entries = pl.concat([self._all_entries(), added]) if self._entries is not None else None
        return AddResult(snapshot, outcomes, False)

    def _greedy_novel(self, vectors: np.ndarray, candidate: np.ndarray, block: int = 512) -> "_Greedy":
        """Rows of ``vectors`` (among ``candidate``) kept in order, each dropped row with the kept
        row it is too close to. Blockwise: one product against everything kept so far per block."""
        result = _Greedy(kept=[], dropped_by={})
        rows = np.flatnonzero(candidate)
        for start in range(0, len(rows), block):
            chunk = rows[start:start + block]
            earlier = vectors[result.kept] @ vectors[chunk].T if result.kept else None
            inner = vectors[chunk] @ vectors[chunk].T
            kept_in_chunk: list[int] = []
            for j, row in enumerate(chunk):
                best_sim, best_row = -2.0, -1
                if earlier is not None:
                    b = int(np.argmax(earlier[:, j]))
                    best_sim, best_row = float(earlier[b, j]), result.kept[b]
                if kept_in_chunk:
                    sims = inner[kept_in_chunk, j]
                    b = int(np.argmax(sims))
                    if float(sims[b]) > best_sim:
                        best_sim, best_row = float(sims[b]), int(chunk[kept_in_chunk[b]])
                if best_sim >= self.novelty_threshold:
                    result.dropped_by[int(row)] = (best_row, best_sim)
                else:
                    kept_in_chunk.append(j)
            result.kept.extend(int(chunk[j]) for j in kept_in_chunk)
        return result

    # ------------------------------------------------------------------ retrieving

    def retrieve(
        self,
        queries: Sequence[str] | pl.DataFrame,
        k: int = 3,
        *,
        snapshot: str | None = None,
        min_similarity: float | None = None,
        embed_batch_size: int = 64,
    ) -> pl.DataFrame:
        """Top-k library modules per query, as seen in ``snapshot`` (the latest when None).

        ``queries`` are texts (see ``query_text``) or a frame with ``name``, ``signature`` and
        ``description`` columns (decomposed modules). One output row per (query, hit):
        ``query_index``, ``rank`` (1 = best), ``similarity``, the entry's columns, and
        ``library_snapshot``, the snapshot id to record on the evolved response.
        """
        snap = self.snapshot(snapshot)
        if isinstance(queries, pl.DataFrame):
            texts = [
                query_text(r["name"] or "", r["signature"] or "", r["description"] or "")
                for r in queries.select("name", "signature", "description").iter_rows(named=True)
            ]
        else:
            texts = [str(q) for q in queries]
        schema = {"query_index": pl.Int64, "rank": pl.Int64, "similarity": pl.Float64, **ENTRY_SCHEMA, "library_snapshot": pl.String}
        if not texts or snap.entries == 0:
            return pl.DataFrame(schema=schema)
        vectors = self.embedder.embed(texts, batch_size=embed_batch_size)
        hits = self.index.search(vectors, k, limit=snap.entries)
        query_index, rank = np.nonzero(hits.ids >= 0)
        positions = hits.ids[query_index, rank]
        sims = hits.similarities[query_index, rank].astype(np.float64)
        if min_similarity is not None:
            keep = sims >= min_similarity
            query_index, rank, positions, sims = query_index[keep], rank[keep], positions[keep], sims[keep]
        rows = self._all_entries().select(pl.all().gather(pl.Series(positions, dtype=pl.Int64)))
        return rows.with_columns(
            pl.Series("query_index", query_index, dtype=pl.Int64),
            pl.Series("rank", rank + 1, dtype=pl.Int64),
            pl.Series("similarity", sims, dtype=pl.Float64),
            pl.lit(snap.snapshot_id).alias("library_snapshot"),
        ).select(list(schema))

    def retrieve_for_queries(
        self,
        queries: pl.DataFrame,
        k: int = 3,
        *,
        snapshot: str | None = None,
        min_similarity: float | None = None,
    ) -> pl.DataFrame:
        """``retrieve`` in the layout the evolution stage reads: one row per query.

        ``queries`` has ``query_id`` and ``text`` (``decomposition.retrieval_queries``); the
        result has ``query_id``, ``retrieved`` (list of ``{entry_id, similarity, name,
        signature, description, code}``, best first) and ``library_snapshot``.
        """
        snap = self.snapshot(snapshot)
        hits = self.retrieve(queries.get_column("text").to_list(), k, snapshot=snap.snapshot_id, min_similarity=min_similarity)
        entry = pl.struct(
            pl.col("module_id").alias("entry_id"), "similarity", "name", "signature", "description", "code"
        )
        grouped = (
            hits.sort("query_index", "rank")
            .group_by("query_index", maintain_order=True)
            .agg(entry.alias("retrieved"))
        )
        frame = (
            queries.select("query_id")
            .with_row_index("query_index")
            .with_columns(pl.col("query_index").cast(pl.Int64))
            .join(grouped, on="query_index", how="left")
        )
        return frame.select(
            "query_id",
            pl.col("retrieved").cast(RETRIEVED_LIST).fill_null(pl.lit([], dtype=RETRIEVED_LIST)),
            pl.lit(snap.snapshot_id).alias("library_snapshot"),
        )
