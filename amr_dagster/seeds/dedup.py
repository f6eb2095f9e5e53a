"""Global near-dedup of seed batches: within a batch and against every batch deduplicated before it.

Meaning (the contract tests and the benchmark check):

- **Arrival order** is the ledger order of batches, then the row order of each batch. Stored
  rows of earlier batches are survivors by construction, so they always arrive first.
- **Exact duplicates** (identical text, by a 64-bit xxh3 of its UTF-8 bytes) are always removed:
  the first arrival survives, later copies get ``exact_duplicate: <kept id>`` and Jaccard 1.0.
- **Near duplicates**: candidates come from MinHash LSH banding (``amr_dagster.seeds.minhash``) and are
  verified with the Jaccard estimated from the full signatures (``>= threshold``). A row that
  near-duplicates a stored row of an earlier batch is rejected naming that stored row (the best
  match: highest estimate, then earliest arrival). Within the batch rows are decided greedily in
  arrival order: a row is rejected when it near-duplicates a row that arrived earlier *and
  survived*, naming the best such survivor, so every rejected row names a kept copy.
  Rows without any token have no shingles: only exact duplicates apply to them.
- **Stored signatures, not recomputation**: survivors' signatures and band keys go to one Parquet
  file per batch under the store root; a ledger records the order batches were first
  deduplicated. Re-running a batch compares it with exactly the batches before it in the ledger,
  so it gets the same result, never matches itself, and batches added later never change it.

Scale: stored band keys are read lazily (a polars scan over the earlier batches' files joined
with the new batch's keys); full signatures are read only for candidate rows, only from the
files that hold candidates.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import polars as pl
import xxhash

from amr_dagster.seeds import minhash
from amr_dagster.ids import stable_id
from amr_dagster.outcomes import with_status

EXACT = "exact_duplicate"
NEAR = "near_duplicate"
DUPLICATE_OF = "duplicate_of"
DUPLICATE_JACCARD = "duplicate_jaccard"

STORE_FORMAT = 1
_PAIR_CHUNK = 50_000  # pairs whose signatures are compared at once (bounded memory)


@dataclass(frozen=True)
class DedupConfig:
    """Near-dedup parameters. ``bands``/``rows`` follow from ``threshold`` and ``num_perm``."""

    num_perm: int = 256
    threshold: float = 0.7
    shingle_size: int = 5
    seed: int = 1

    def __post_init__(self) -> None:
        if self.num_perm < 2:
            raise ValueError("num_perm must be at least 2")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if self.shingle_size < 1:
            raise ValueError("shingle_size must be at least 1")

    @property
    def bands(self) -> int:
        return minhash.lsh_params(self.threshold, self.num_perm)[0]

    @property
    def rows(self) -> int:
        return minhash.lsh_params(self.threshold, self.num_perm)[1]

    def hasher(self) -> minhash.MinHasher:
        return minhash.MinHasher(num_perm=self.num_perm, seed=self.seed, shingle_size=self.shingle_size)

    def signature_settings(self) -> dict[str, Any]:
        """What makes stored signatures and band keys comparable; a store holds one such family."""
        return {
            "format": STORE_FORMAT,
            "num_perm": self.num_perm,
            "seed": self.seed,
            "shingle_size": self.shingle_size,
            "bands": self.bands,
            "rows": self.rows,
            "token_pattern": minhash.TOKEN_PATTERN,
            "shingle_hash": "xxh3_64-tokens/fmix64-fold/top32",
            "scheme": "datasketch-affine32",
        }


def config_dict(config: DedupConfig) -> dict[str, Any]:
    """The config as plain values (for asset metadata)."""
    return {**asdict(config), "bands": config.bands, "rows_per_band": config.rows}


class SignatureSettingsMismatch(ValueError):
    """The store holds signatures of another family (num_perm, bands, shingling...)."""


class SignatureStore:
    """Survivors' signatures of every deduplicated batch, plus the ledger of their order.

    Layout under ``root``: ``settings.json`` (the signature family), ``ledger.json`` (batches in
    the order they were first deduplicated, with their file names), ``batches/<file>.parquet``
    (columns ``id``, ``row``, ``content_hash``, ``signature``, ``band_keys``) and ``.lock``.
    Files are replaced atomically; ``locked()`` serialises whole dedup runs across processes, so
    a batch always sees complete files of every batch before it. Local filesystems only (fcntl).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # ---- locking and small JSON files

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read_json(self, name: str) -> Any:
        path = self.root / name
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def _write_atomic(self, target: Path, write) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _write_json(self, name: str, value: Any) -> None:
        text = json.dumps(value, indent=1, sort_keys=True)
        self._write_atomic(self.root / name, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    # ---- settings and ledger

    def settings(self) -> dict[str, Any] | None:
        return self._read_json("settings.json")

    def ensure_settings(self, expected: dict[str, Any]) -> None:
        """Record the signature family on first use; refuse to mix families afterwards."""
        stored = self.settings()
        if stored is None:
            self._write_json("settings.json", expected)
            return
        diff = {k: (stored.get(k), expected.get(k)) for k in set(stored) | set(expected) if stored.get(k) != expected.get(k)}
        if diff:
            detail = ", ".join(f"{k}: stored {s!r} vs config {e!r}" for k, (s, e) in sorted(diff.items()))
            raise SignatureSettingsMismatch(
                f"signature store {self.root} holds another signature family ({detail}); "
                "signatures of different families cannot be compared: use the stored settings or a new store root"
            )

    def _ledger(self) -> list[dict[str, str]]:
        return list((self._read_json("ledger.json") or {}).get("batches", []))

    def batches(self) -> list[str]:
        """Batch names in the order they were first deduplicated."""
        return [entry["batch"] for entry in self._ledger()]

    def file_of(self, batch: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", batch)[:80]
        return self.root / "batches" / f"{safe}-{stable_id(batch, length=12)}.parquet"

    def files_before(self, batch: str) -> list[Path]:
        """Files of the batches before ``batch`` in the ledger (all of them for a new batch)."""
        files = []
        for entry in self._ledger():
            if entry["batch"] == batch:
                break
            path = self.root / "batches" / entry["file"]
            if not path.is_file():
                raise FileNotFoundError(f"signature file of earlier batch {entry['batch']!r} is missing: {path}")
            files.append(path)
        return files

    def write_batch(self, batch: str, survivors: pl.DataFrame) -> Path:
        """Store a batch's survivors, then append the batch to the ledger if it is new."""
        target = self.file_of(batch)
        self._write_atomic(target, lambda tmp: survivors.write_parquet(tmp, compression="lz4"))
        ledger = self._ledger()
        if batch not in {entry["batch"] for entry in ledger}:
            ledger.append({"batch": batch, "file": target.name})
            self._write_json("ledger.json", {"batches": ledger})
        return target

    def retain(self, batches: set[str]) -> None:
        """Forget every batch not in ``batches`` (ledger entry and file), keeping the order of
        the rest: how a caller that re-judges batches from some point on rewinds the store."""
        ledger = self._ledger()
        kept = [entry for entry in ledger if entry["batch"] in batches]
        if len(kept) == len(ledger):
            return
        self._write_json("ledger.json", {"batches": kept})
        for entry in ledger:
            if entry["batch"] not in batches:
                (self.root / "batches" / entry["file"]).unlink(missing_ok=True)

    def load(self, batch: str) -> pl.DataFrame:
        """The stored survivors of one batch (for inspection and tests)."""
        return pl.read_parquet(self.file_of(batch))


# ---------------------------------------------------------------- the dedup


def content_hashes(texts: list[str | None]) -> np.ndarray:
    """64-bit xxh3 of each text's UTF-8 bytes (null counts as empty): the exact-duplicate key."""
    return np.fromiter(
        (xxhash.xxh3_64_intdigest((t or "").encode("utf-8", "surrogatepass")) for t in texts),
        dtype=np.uint64,
        count=len(texts),
    )


def _pair_jaccard(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of row pairs, in chunks so huge candidate sets stay bounded in memory."""
    out = np.empty(left.shape[0], dtype=np.float64)
    for lo in range(0, left.shape[0], _PAIR_CHUNK):
        hi = lo + _PAIR_CHUNK
        out[lo:hi] = minhash.estimated_jaccard(left[lo:hi], right[lo:hi])
    return out


def _keys_frame(keys: np.ndarray, docs: np.ndarray) -> pl.DataFrame:
    """Long frame (doc, key): one row per band of each listed document."""
    return pl.DataFrame(
        {
            "doc": np.repeat(docs.astype(np.int64), keys.shape[1]),
            "key": keys[docs].reshape(-1),
        }
    )


def _best_per_doc(doc: np.ndarray, other: np.ndarray, jacc: np.ndarray) -> dict[int, tuple[int, float]]:
    """For each doc, its best verified match: highest Jaccard, then the earliest other."""
    order = np.lexsort((other, -jacc, doc))
    best: dict[int, tuple[int, float]] = {}
    for i in order:
        d = int(doc[i])
        if d not in best:
            best[d] = (int(other[i]), float(jacc[i]))
    return best


class _Decisions:
    """Per-row outcome being built: which family of duplicate, of which kept id, how similar."""

    def __init__(self, n: int) -> None:
        self.family: list[str | None] = [None] * n
        self.kept_id: list[str | None] = [None] * n
        self.jaccard: list[float | None] = [None] * n

    def reject(self, doc: int, family: str, kept_id: str, jaccard: float) -> None:
        self.family[doc], self.kept_id[doc], self.jaccard[doc] = family, kept_id, jaccard

    def copy(self, doc: int, source: int) -> None:
        self.reject(doc, self.family[source], self.kept_id[source], self.jaccard[source])  # type: ignore[arg-type]

    def undecided(self, docs: np.ndarray) -> np.ndarray:
        return np.array([d for d in docs if self.family[d] is None], dtype=np.int64)

    def reasons(self) -> list[str | None]:
        return [None if f is None else f"{f}: {k}" for f, k in zip(self.family, self.kept_id)]


def _scan_stored(files: list[Path]) -> pl.LazyFrame:
    """All earlier batches' stored rows, lazily, with ``arrival`` = (ledger position, row) as one int."""
    position = {str(f): i for i, f in enumerate(files)}
    return pl.scan_parquet(files, include_file_paths="file").with_columns(
        (pl.col("file").replace_strict(position, return_dtype=pl.Int64) * (1 << 32) + pl.col("row")).alias("arrival")
    )


def _exact_copies_of_stored(stored: pl.LazyFrame, docs: np.ndarray, hashes: np.ndarray) -> dict[int, str]:
    """doc -> id of the earliest stored row with the same text."""
    matches = (
        stored.select("arrival", "id", "content_hash")
        .join(pl.DataFrame({"doc": docs, "content_hash": hashes[docs]}).lazy(), on="content_hash")
        .group_by("doc")
        .agg(pl.col("id").sort_by("arrival").first())
        .collect()
    )
    return dict(matches.iter_rows())


def _near_copies_of_stored(
    stored: pl.LazyFrame, docs: np.ndarray, keys: np.ndarray, signatures: np.ndarray, threshold: float
) -> tuple[dict[int, tuple[str, float]], int, int]:
    """doc -> (stored id, estimated Jaccard) of its best verified stored match; pair counts.

    Only the band keys of stored rows are scanned (lazily, joined with this batch's keys); full
    signatures are then read from the files holding candidates, for the candidate rows only.
    """
    candidates = (
        stored.select("file", "row", "arrival", "band_keys")
        .explode("band_keys")
        .drop_nulls("band_keys")
        .join(_keys_frame(keys, docs).lazy(), left_on="band_keys", right_on="key")
        .select("doc", "file", "row", "arrival")
        .unique()
        .collect()
    )
    if candidates.is_empty():
        return {}, 0, 0
    loaded = pl.concat(
        pl.scan_parquet(file)
        .filter(pl.col("row").is_in(group.get_column("row").unique().implode()))
        .select(pl.lit(file).alias("file"), "row", "id", "signature")
        .collect()
        for (file,), group in candidates.group_by("file", maintain_order=True)
    )
    slot = {(f, r): i for i, (f, r) in enumerate(loaded.select("file", "row").iter_rows())}
    stored_ids = loaded.get_column("id").to_list()
    stored_sigs = loaded.get_column("signature").to_numpy()
    where = [slot[(f, r)] for f, r in candidates.select("file", "row").iter_rows()]
    doc = candidates.get_column("doc").to_numpy()
    arrival = candidates.get_column("arrival").to_numpy()
    jacc = _pair_jaccard(signatures[doc], stored_sigs[where])
    ok = jacc >= threshold
    best = _best_per_doc(doc[ok], arrival[ok], jacc[ok])
    id_at = dict(zip(arrival.tolist(), (stored_ids[w] for w in where)))
    return {d: (id_at[a], j) for d, (a, j) in best.items()}, candidates.height, int(ok.sum())


def _verified_pairs_within(
    docs: np.ndarray, keys: np.ndarray, signatures: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(earlier, later, estimated Jaccard) of every verified LSH pair among ``docs``; candidates."""
    long = _keys_frame(keys, docs)
    pairs = (
        long.join(long, on="key", suffix="_later")
        .filter(pl.col("doc") < pl.col("doc_later"))
        .select("doc", "doc_later")
        .unique()
    )
    earlier = pairs.get_column("doc").to_numpy()
    later = pairs.get_column("doc_later").to_numpy()
    jacc = _pair_jaccard(signatures[earlier], signatures[later])
    ok = jacc >= threshold
    return earlier[ok], later[ok], jacc[ok], pairs.height


def _survivors_frame(
    docs: np.ndarray, ids: list[str], hashes: np.ndarray, signatures: np.ndarray, keys: np.ndarray, shingled: np.ndarray
) -> pl.DataFrame:
    """What the store keeps of each survivor; rows without shingles get no band keys."""
    num_perm, bands = signatures.shape[1], keys.shape[1]
    return pl.DataFrame(
        {
            "id": pl.Series([ids[d] for d in docs], dtype=pl.String),
            "row": pl.Series(docs, dtype=pl.Int64),
            "content_hash": pl.Series(hashes[docs], dtype=pl.UInt64),
            "signature": pl.Series(signatures[docs], dtype=pl.Array(pl.UInt32, num_perm)),
            "band_keys": pl.Series(keys[docs], dtype=pl.Array(pl.UInt64, bands)),
        }
    ).with_columns(pl.when(pl.Series(shingled[docs])).then(pl.col("band_keys")).alias("band_keys"))


def dedup_batch(
    frame: pl.DataFrame,
    batch: str,
    store: SignatureStore,
    config: DedupConfig,
    text_column: str = "code",
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Deduplicate one batch within itself and against every earlier batch of the store.

    Returns the frame's rows in their order with ``status``/``reject_reason`` plus
    ``duplicate_of`` (id of the kept copy, or null) and ``duplicate_jaccard`` (estimated Jaccard,
    1.0 for exact copies, or null), and a stats dict for asset metadata. Survivors are stored
    under ``batch`` so later batches are deduplicated against them.
    """
    for column in ("id", text_column):
        if column not in frame.columns:
            raise KeyError(f"dedup needs a {column!r} column; the frame has {frame.columns}")
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    n = frame.height
    ids = [str(v) for v in frame.get_column("id").to_list()]
    texts = frame.get_column(text_column).cast(pl.String).to_list()
    threshold = config.threshold

    tick = time.perf_counter()
    signatures = config.hasher().signatures(texts)
    shingled = minhash.has_shingles(signatures)
    keys = minhash.band_keys(signatures, config.bands, config.rows)
    hashes = content_hashes(texts)
    seconds["signatures"] = time.perf_counter() - tick

    decisions = _Decisions(n)
    stats: dict[str, Any] = {"rows": n, "without_shingles": int(n - shingled.sum()), **config_dict(config)}
    # The first arrival of each distinct text represents it; later copies share its fate.
    _, first_index, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    representative = first_index[inverse.reshape(-1)].astype(np.int64)
    undecided = np.flatnonzero(representative == np.arange(n))

    with store.locked():
        store.ensure_settings(config.signature_settings())
        earlier = store.files_before(batch)
        stats["earlier_batches"] = len(earlier)

        tick = time.perf_counter()
        exact_cross: dict[int, str] = {}
        near_cross: dict[int, tuple[str, float]] = {}
        stats["candidate_pairs_cross"] = stats["verified_pairs_cross"] = 0
        if earlier and undecided.size:
            stored = _scan_stored(earlier)
            exact_cross = _exact_copies_of_stored(stored, undecided, hashes)
            for doc, kept in exact_cross.items():
                decisions.reject(doc, EXACT, kept, 1.0)
            undecided = decisions.undecided(undecided)
            near = undecided[shingled[undecided]]
            if near.size:
                near_cross, stats["candidate_pairs_cross"], stats["verified_pairs_cross"] = _near_copies_of_stored(
                    stored, near, keys, signatures, threshold
                )
                for doc, (kept, jacc) in near_cross.items():
                    decisions.reject(doc, NEAR, kept, jacc)
                undecided = decisions.undecided(undecided)
        stats["exact_cross"], stats["near_cross"] = len(exact_cross), len(near_cross)
        seconds["cross_batch"] = time.perf_counter() - tick

        # Within the batch, in arrival order: a row goes when it matches an earlier survivor.
        tick = time.perf_counter()
        stats["candidate_pairs_within"] = stats["verified_pairs_within"] = stats["near_within"] = 0
        near = undecided[shingled[undecided]]
        if near.size > 1:
            earlier_doc, later_doc, jacc, stats["candidate_pairs_within"] = _verified_pairs_within(
                near, keys, signatures, threshold
            )
            stats["verified_pairs_within"] = int(later_doc.size)
            for i in np.lexsort((earlier_doc, -jacc, later_doc)):  # by later row, best match first
                later, kept = int(later_doc[i]), int(earlier_doc[i])
                if decisions.family[later] is None and decisions.family[kept] is None:
                    decisions.reject(later, NEAR, ids[kept], float(jacc[i]))
                    stats["near_within"] += 1
        copies = np.flatnonzero(representative != np.arange(n))
        for doc in copies:
            rep = int(representative[doc])
            if decisions.family[rep] is None:
                decisions.reject(int(doc), EXACT, ids[rep], 1.0)
            else:
                decisions.copy(int(doc), rep)
        stats["exact_within"] = int(copies.size)
        seconds["within_batch"] = time.perf_counter() - tick

        tick = time.perf_counter()
        kept_docs = decisions.undecided(np.arange(n))
        store.write_batch(batch, _survivors_frame(kept_docs, ids, hashes, signatures, keys, shingled))
        stats["ledger_position"] = store.batches().index(batch)
        seconds["store_write"] = time.perf_counter() - tick

    result = with_status(frame, decisions.reasons()).with_columns(
        pl.Series(DUPLICATE_OF, decisions.kept_id, dtype=pl.String),
        pl.Series(DUPLICATE_JACCARD, decisions.jaccard, dtype=pl.Float64),
    )
    stats["accepted"] = int(kept_docs.size)
    stats["rejected"] = n - int(kept_docs.size)
    seconds["total"] = time.perf_counter() - started
    stats["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
    return result, stats
