"""Benchmark: the project's near-dedup vs plain datasketch, same documents, same process.

Corpus: the first ``--n`` (default 20,000) real functions mined from this interpreter's
standard library and site-packages (``bench.corpus.real_functions``), in arrival order.

Baseline (plain datasketch, what one would write without this project): for each document in
order, its word 5-gram shingle set (tokens ``\\w+`` with Python's ``re``, the same sets as
``amr_dagster.seeds.minhash.word_shingles``; mismatches are counted and printed), one
``MinHash(num_perm)`` with ``update_batch`` of the UTF-8 shingles (datasketch's default hash),
then ``MinHashLSH(threshold, num_perm)``: query, and insert only when the query finds nothing
(query-then-insert). A non-empty query rejects the document, naming the earliest result.

Project: ``amr_dagster.seeds.dedup.dedup_batch`` on the same documents with a fresh temporary
signature store (so its time includes writing the survivors' signatures). It runs
``--project-runs`` times (default 3, each with a fresh store; the results must be identical)
and its median wall time is used: the project's run is short, so one scheduling hiccup on a
shared machine would otherwise dominate it, while the baseline's long run averages them out.
(On a fresh checkout the first run also includes numba compiling the signature kernel, which
is cached on disk afterwards.) The corpus is then also fed as 4 consecutive batches through one
store, which must keep exactly the same rows as the single batch.
CPU time (all threads of the process) is printed too, for both.

Quality, against exact Jaccard of the shingle sets:

- *Evaluated pairs*: every LSH candidate pair of the project (two documents sharing a band key,
  over all documents, survivors or not), every pair the baseline's queries returned, and a
  uniform random sample of other pairs (``--sample-pairs``, seeded).
- *True pairs*: evaluated pairs with exact Jaccard >= threshold (identical texts count as 1.0,
  also without tokens).
- **Recall**: the share of true pairs the dedup resolved, i.e. not both documents survived.
- **Precision**: the share of rejections whose named kept copy has exact Jaccard >= threshold
  with the rejected document.

Speed is documents per second of wall time over the whole run (shingling, signatures, LSH,
decisions, and for the project the store write); the ratio is baseline wall time over the
project's median wall time. The last line is ``dedup: <ratio>x datasketch baseline, recall <r>, precision <p>, <n> docs``.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from datasketch import MinHash, MinHashLSH

from amr_dagster.seeds import minhash
from amr_dagster.seeds.dedup import DUPLICATE_OF, DedupConfig, SignatureStore, dedup_batch
from amr_dagster.outcomes import ACCEPTED

_WORD = re.compile(minhash.TOKEN_PATTERN)


def load_corpus(n: int, cache: Path | None) -> pl.DataFrame:
    """``id`` and ``code`` of the first ``n`` real functions (optionally cached as Parquet)."""
    if cache is not None and cache.is_file():
        frame = pl.read_parquet(cache)
        if frame.height >= n:
            return frame.head(n)
    from bench.corpus import real_functions

    rows = real_functions(n)
    frame = pl.DataFrame({"id": [r["id"] for r in rows], "code": [r["code"] for r in rows]})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(cache)
    return frame


def baseline_shingles(text: str, size: int) -> set[str]:
    tokens = _WORD.findall(text)
    if not tokens:
        return set()
    if len(tokens) < size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def run_baseline(texts: list[str], config: DedupConfig) -> tuple[float, float, list[int | None], set[tuple[int, int]]]:
    """Plain datasketch query-then-insert: wall and CPU seconds, the kept copy per doc, queried pairs."""
    started, cpu_started = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    kept_of: list[int | None] = []
    pairs: set[tuple[int, int]] = set()
    for doc, text in enumerate(texts):
        m = MinHash(num_perm=config.num_perm, seed=config.seed)
        m.update_batch([s.encode("utf-8") for s in baseline_shingles(text, config.shingle_size)])
        found: list[int] = [key for key in lsh.query(m) if isinstance(key, int)]  # keys: doc positions
        if found:
            kept_of.append(min(found))
            pairs.update((other, doc) for other in found)
        else:
            kept_of.append(None)
            lsh.insert(doc, m)
    return time.perf_counter() - started, time.process_time() - cpu_started, kept_of, pairs


def project_candidate_pairs(texts: list[str], config: DedupConfig) -> set[tuple[int, int]]:
    """All pairs of documents sharing at least one band key (the project's LSH candidates)."""
    sigs = config.hasher().signatures(texts)
    keys = minhash.band_keys(sigs, config.bands, config.rows)
    docs = np.flatnonzero(minhash.has_shingles(sigs))
    long = pl.DataFrame({"doc": np.repeat(docs, config.bands), "key": keys[docs].reshape(-1)})
    pairs = long.join(long, on="key", suffix="_b").filter(pl.col("doc") < pl.col("doc_b")).select("doc", "doc_b").unique()
    return set(zip(pairs.get_column("doc").to_list(), pairs.get_column("doc_b").to_list()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="documents (real functions)")
    parser.add_argument("--sample-pairs", type=int, default=200_000, help="random non-candidate pairs evaluated")
    parser.add_argument("--corpus-cache", type=Path, default=None, help="Parquet file to reuse the mined corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project-runs", type=int, default=3)
    args = parser.parse_args(argv)
    config = DedupConfig()

    tick = time.perf_counter()
    corpus = load_corpus(args.n, args.corpus_cache)
    texts = corpus.get_column("code").to_list()
    n = len(texts)
    print(f"corpus: {n} functions ({len(set(texts))} distinct texts), loaded in {time.perf_counter() - tick:.1f}s")
    print(f"params: num_perm={config.num_perm} threshold={config.threshold} shingle_size={config.shingle_size} "
          f"bands={config.bands} rows={config.rows}")
    shingle_sets = [minhash.word_shingles(t, config.shingle_size) for t in texts]
    mismatched = sum(baseline_shingles(t, config.shingle_size) != s for t, s in zip(texts, shingle_sets))
    print(f"baseline shingles differing from the project's: {mismatched} of {n} documents")

    base_seconds, base_cpu, base_kept_of, base_pairs = run_baseline(texts, config)
    runs = []
    for _ in range(max(1, args.project_runs)):
        with tempfile.TemporaryDirectory() as tmp:
            tick, cpu_tick = time.perf_counter(), time.process_time()
            result, stats = dedup_batch(corpus, "bench", SignatureStore(Path(tmp) / "minhash"), config)
            runs.append((time.perf_counter() - tick, time.process_time() - cpu_tick, result, stats))
    if any(not r[2].equals(runs[0][2]) for r in runs[1:]):
        raise SystemExit("project runs disagree: dedup is not deterministic")
    project_seconds = float(np.median([r[0] for r in runs]))
    project_cpu = float(np.median([r[1] for r in runs]))
    result, stats = runs[0][2], runs[0][3]
    ratio = base_seconds / project_seconds
    print(f"baseline datasketch: {base_seconds:.2f}s wall ({base_cpu:.2f}s CPU), {n / base_seconds:,.0f} docs/s, "
          f"{sum(k is not None for k in base_kept_of)} rejected")
    print(f"project dedup_batch: {project_seconds:.2f}s wall median of {[round(r[0], 2) for r in runs]} "
          f"({project_cpu:.2f}s CPU), {n / project_seconds:,.0f} docs/s, {minhash.default_workers()} signature threads, "
          f"{stats['rejected']} rejected (exact {stats['exact_within']}, near {stats['near_within']})")
    print(f"project stage seconds (first run): {stats['seconds']}")
    print(f"speed-up: {ratio:.1f}x wall, {base_cpu / project_cpu:.1f}x CPU time "
          f"(first, cold run alone: {base_seconds / runs[0][0]:.1f}x wall; it loads the numba kernel)")
    print(cross_batch_check(corpus, config, result, pieces=4))

    # ---- quality against exact Jaccard
    index_of = {i: d for d, i in enumerate(corpus.get_column("id").to_list())}
    status = result.get_column("status").to_list()
    project_kept_of = [None if k is None else index_of[k] for k in result.get_column(DUPLICATE_OF).to_list()]
    if len(index_of) != n:  # duplicate ids: name positions by arrival instead
        project_kept_of = _kept_positions(result)

    def exact(a: int, b: int) -> float:
        if texts[a] == texts[b]:
            return 1.0
        union = shingle_sets[a] | shingle_sets[b]
        return len(shingle_sets[a] & shingle_sets[b]) / len(union) if union else 0.0

    candidates = project_candidate_pairs(texts, config) | base_pairs
    rng = random.Random(args.seed)
    sampled: set[tuple[int, int]] = set()
    while len(sampled) < min(args.sample_pairs, n * (n - 1) // 2 - len(candidates)):
        a, b = sorted(rng.sample(range(n), 2))
        if (a, b) not in candidates:
            sampled.add((a, b))
    evaluated = candidates | sampled
    # identical texts are true pairs even without tokens
    by_text: dict[str, list[int]] = {}
    for d, t in enumerate(texts):
        by_text.setdefault(t, []).append(d)
    for group in by_text.values():
        evaluated.update((a, b) for i, a in enumerate(group) for b in group[i + 1 :])
    true_pairs = [(a, b) for a, b in evaluated if exact(a, b) >= config.threshold]
    true_in_sample = sum(1 for a, b in sampled if exact(a, b) >= config.threshold)
    print(f"evaluated pairs: {len(evaluated)} ({len(candidates)} LSH candidates of either method, "
          f"{len(sampled)} random others); true pairs (exact J >= {config.threshold}): {len(true_pairs)}, "
          f"of them in the random sample: {true_in_sample}")

    def quality(survives: list[bool], kept_of: list[int | None]) -> tuple[float, float, int]:
        resolved = sum(1 for a, b in true_pairs if not (survives[a] and survives[b]))
        decisions = [(d, k) for d, k in enumerate(kept_of) if k is not None]
        correct = sum(1 for d, k in decisions if exact(d, k) >= config.threshold)
        recall = resolved / len(true_pairs) if true_pairs else 1.0
        precision = correct / len(decisions) if decisions else 1.0
        return recall, precision, len(true_pairs) - resolved

    recall, precision, missed = quality([s == ACCEPTED for s in status], project_kept_of)
    b_recall, b_precision, b_missed = quality([k is None for k in base_kept_of], base_kept_of)
    print(f"project : recall {recall:.4f} ({missed} true pairs both kept), precision {precision:.4f}")
    print(f"baseline: recall {b_recall:.4f} ({b_missed} true pairs both kept), precision {b_precision:.4f}")
    print(f"dedup: {ratio:.1f}x datasketch baseline, recall {recall:.3f}, precision {precision:.3f}, {n} docs")


def cross_batch_check(corpus: pl.DataFrame, config: DedupConfig, whole: pl.DataFrame, pieces: int) -> str:
    """The corpus cut into consecutive batches through one store must keep the same rows."""
    size = -(-corpus.height // pieces)
    with tempfile.TemporaryDirectory() as tmp:
        store = SignatureStore(Path(tmp) / "minhash")
        tick = time.perf_counter()
        parts = [dedup_batch(corpus[i : i + size], f"part{i // size}", store, config) for i in range(0, corpus.height, size)]
        seconds = time.perf_counter() - tick
    same = pl.concat([p for p, _ in parts]).get_column("status").equals(whole.get_column("status"))
    cross = sum(s["exact_cross"] + s["near_cross"] for _, s in parts)
    return (f"as {len(parts)} consecutive batches through one store: {seconds:.2f}s, {cross} rows rejected "
            f"against earlier batches, same survivors as one batch: {same}")


def _kept_positions(result: pl.DataFrame) -> list[int | None]:
    """Kept copy per row as a position, resolving a named id to its earliest accepted row."""
    first_accepted: dict[str, int] = {}
    for d, (i, s) in enumerate(zip(result.get_column("id").to_list(), result.get_column("status").to_list())):
        if s == ACCEPTED:
            first_accepted.setdefault(i, d)
    return [None if k is None else first_accepted.get(k) for k in result.get_column(DUPLICATE_OF).to_list()]


if __name__ == "__main__":
    sys.exit(main())
