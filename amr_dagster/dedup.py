"""Global near-dedup of seed batches: within a batch and against every batch deduplicated before it.

Meaning (the contract tests and the benchmark check):

- **Arrival order** is the ledger order of batches, then the row order of each batch. Stored
  rows of earlier batches are survivors by construction, so they always arrive first.
- **Exact duplicates** (identical text, by a 64-bit xxh3 of its UTF-8 bytes) are always removed:
  the first arrival survives, later copies get ``exact_duplicate: <kept id>`` and Jaccard 1.0.
- **Near duplicates**: candidates come from MinHash LSH banding (``amr_dagster.minhash``) and are
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
with the new batch's keys); full signatures are loaded only for candidate rows.
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

from amr_dagster import minhash
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
    hasher = config.hasher()
    bands, rows, threshold = config.bands, config.rows, config.threshold

    tick = time.perf_counter()
    signatures = hasher.signatures(texts)
    shingled = minhash.has_shingles(signatures)
    keys = minhash.band_keys(signatures, bands, rows)
    hashes = content_hashes(texts)
    seconds["signatures"] = time.perf_counter() - tick

    duplicate_of: list[str | None] = [None] * n
    jaccard: list[float | None] = [None] * n
    family: list[str | None] = [None] * n
    stats: dict[str, Any] = {
        "rows": n,
        "exact_within": 0,
        "exact_cross": 0,
        "near_within": 0,
        "near_cross": 0,
        "without_shingles": int(n - shingled.sum()),
        "candidate_pairs_cross": 0,
        "verified_pairs_cross": 0,
        "candidate_pairs_within": 0,
        "verified_pairs_within": 0,
        "num_perm": config.num_perm,
        "bands": bands,
        "rows_per_band": rows,
        "threshold": threshold,
    }

    with store.locked():
        store.ensure_settings(config.signature_settings())
        earlier = store.files_before(batch)
        stats["earlier_batches"] = len(earlier)
        stored = pl.scan_parquet(earlier).with_row_index("stored_row") if earlier else None

        # The first arrival of each distinct text represents it; later copies follow it below.
        tick = time.perf_counter()
        _, first_index, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        representative = first_index[inverse.reshape(-1)] if n else np.zeros(0, dtype=np.int64)
        is_rep = representative == np.arange(n)
        open_docs = np.flatnonzero(is_rep)  # representatives not decided yet

        # Exact copies of stored rows.
        if stored is not None and open_docs.size:
            matches = (
                stored.select("stored_row", "id", "content_hash")
                .join(
                    pl.DataFrame({"doc": open_docs.astype(np.int64), "content_hash": hashes[open_docs]}).lazy(),
                    on="content_hash",
                )
                .group_by("doc")
                .agg(pl.col("id").sort_by("stored_row").first())
                .collect()
            )
            for doc, kept in matches.iter_rows():
                family[doc], duplicate_of[doc], jaccard[doc] = EXACT, kept, 1.0
                stats["exact_cross"] += 1
            open_docs = np.array([d for d in open_docs if family[d] is None], dtype=np.int64)
        seconds["exact_cross"] = time.perf_counter() - tick

        # Near copies of stored rows: join band keys, verify candidates on full signatures.
        tick = time.perf_counter()
        near_docs = open_docs[shingled[open_docs]] if open_docs.size else open_docs
        if stored is not None and near_docs.size:
            candidates = (
                stored.select("stored_row", "band_keys")
                .explode("band_keys")
                .drop_nulls("band_keys")
                .join(_keys_frame(keys, near_docs).lazy(), left_on="band_keys", right_on="key")
                .select("doc", "stored_row")
                .unique()
                .collect()
            )
            stats["candidate_pairs_cross"] = candidates.height
            if candidates.height:
                wanted = candidates.get_column("stored_row").unique()
                loaded = (
                    stored.filter(pl.col("stored_row").is_in(wanted.implode()))
                    .select("stored_row", "id", "signature")
                    .collect()
                )
                slot = {r: i for i, r in enumerate(loaded.get_column("stored_row").to_list())}
                stored_ids = loaded.get_column("id").to_list()
                stored_sigs = loaded.get_column("signature").to_numpy()
                doc = candidates.get_column("doc").to_numpy()
                stored_row = candidates.get_column("stored_row").to_numpy()
                stored_slot = np.array([slot[int(r)] for r in stored_row], dtype=np.int64)
                jacc = _pair_jaccard(signatures[doc], stored_sigs[stored_slot])
                verified = jacc >= threshold
                stats["verified_pairs_cross"] = int(verified.sum())
                for d, (s, j) in _best_per_doc(doc[verified], stored_row[verified], jacc[verified]).items():
                    family[d], duplicate_of[d], jaccard[d] = NEAR, stored_ids[slot[s]], j
                    stats["near_cross"] += 1
                near_docs = np.array([d for d in near_docs if family[d] is None], dtype=np.int64)
        seconds["cross_batch"] = time.perf_counter() - tick

        # Within the batch: LSH candidate pairs, verified, then decided greedily in arrival order.
        tick = time.perf_counter()
        if near_docs.size > 1:
            long = _keys_frame(keys, near_docs)
            pairs = (
                long.join(long, on="key", suffix="_later")
                .filter(pl.col("doc") < pl.col("doc_later"))
                .select("doc", "doc_later")
                .unique()
            )
            stats["candidate_pairs_within"] = pairs.height
            if pairs.height:
                earlier_doc = pairs.get_column("doc").to_numpy()
                later_doc = pairs.get_column("doc_later").to_numpy()
                jacc = _pair_jaccard(signatures[earlier_doc], signatures[later_doc])
                verified = jacc >= threshold
                stats["verified_pairs_within"] = int(verified.sum())
                earlier_doc, later_doc, jacc = earlier_doc[verified], later_doc[verified], jacc[verified]
                order = np.lexsort((earlier_doc, -jacc, later_doc))  # by later doc, best match first
                for i in order:
                    later, kept = int(later_doc[i]), int(earlier_doc[i])
                    if family[later] is None and family[kept] is None:
                        family[later], duplicate_of[later], jaccard[later] = NEAR, ids[kept], float(jacc[i])
                        stats["near_within"] += 1
        seconds["within_batch"] = time.perf_counter() - tick

        # Later copies of a text share their representative's fate.
        for doc in np.flatnonzero(~is_rep):
            rep = int(representative[doc])
            if family[rep] is None:
                family[doc], duplicate_of[doc], jaccard[doc] = EXACT, ids[rep], 1.0
            else:
                family[doc], duplicate_of[doc], jaccard[doc] = family[rep], duplicate_of[rep], jaccard[rep]
            stats["exact_within"] += 1

        tick = time.perf_counter()
        kept_docs = np.array([d for d in range(n) if family[d] is None], dtype=np.int64)
        survivors = pl.DataFrame(
            {
                "id": pl.Series([ids[d] for d in kept_docs], dtype=pl.String),
                "row": pl.Series(kept_docs, dtype=pl.Int64),
                "content_hash": pl.Series(hashes[kept_docs], dtype=pl.UInt64),
                "signature": pl.Series(signatures[kept_docs], dtype=pl.Array(pl.UInt32, config.num_perm)),
                "band_keys": pl.Series(keys[kept_docs], dtype=pl.Array(pl.UInt64, bands)),
            }
        ).with_columns(
            pl.when(pl.Series(shingled[kept_docs])).then(pl.col("band_keys")).alias("band_keys")
        )
        store.write_batch(batch, survivors)
        stats["ledger_position"] = store.batches().index(batch)
        seconds["store_write"] = time.perf_counter() - tick

    reasons = [None if f is None else f"{f}: {kept}" for f, kept in zip(family, duplicate_of)]
    result = with_status(frame, reasons).with_columns(
        pl.Series(DUPLICATE_OF, duplicate_of, dtype=pl.String),
        pl.Series(DUPLICATE_JACCARD, jaccard, dtype=pl.Float64),
    )
    stats["accepted"] = int(kept_docs.size)
    stats["rejected"] = n - int(kept_docs.size)
    seconds["total"] = time.perf_counter() - started
    stats["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
    return result, stats


def config_dict(config: DedupConfig) -> dict[str, Any]:
    """The config as plain values (for asset metadata)."""
    return {**asdict(config), "bands": config.bands, "rows": config.rows}
