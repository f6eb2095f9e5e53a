"""Module-library retrieval benchmark (issue 6): quality on real functions, speed at 1M entries.

Run: ``python -m bench.retrieval`` (``--functions N``, ``--scale-size N``, ``--queries N``).

Texts are cut to a few tokens for CPU budget: queries at ``--query-tokens`` (64; docstring
summaries are ~20 tokens, so almost none is cut) and entries at ``--entry-tokens`` (32: name,
signature and the first statements). On two cores shared with other jobs, 40,000 texts at the
model's full 256 tokens take hours. Same weights on both sides; the cap is part of each
embedder's model id.

Part (a), quality. At least 20,000 real documented functions (``bench.corpus.real_functions``,
else every documented top-level function of the standard library and site-packages, walked with
the library's own parser). Query = the function's docstring (its summary paragraph, what a
decomposed module's description looks like); target = the function's library entry as the
library embeds an *undocumented* harvested function: ``module_text(name, signature, "", body
without docstring)``. Had the entry kept its docstring, the query would be a verbatim copy of
part of it and any index would score ~1.0; this way the description has to find the code.
Functions are deduplicated by docstring and by entry text so each query has one target.
recall@1 / recall@5 of exact brute-force cosine, of the project's ``ModuleIndex`` as configured
(exact below 50,000 entries, hence identical to brute force here) and of its IVF path forced at
this size.

Part (b), scale. 1,000,000 entries: the 20,000 real entry embeddings (ids 0..19,999, so each
query's target is still there) followed by copies of them with small Gaussian perturbations
(noise norm 0.35, cosine ~0.94 to the original), re-normalised, added to the project's index in
100,000-entry batches as the library grows. Speed: ``--queries`` real docstring embeddings, one
at a time, the project's index vs numpy brute force (``scores = X @ q; argpartition``) in this
process; the ratio of queries/s and the mean overlap of their top-5 id lists. Quality:
recall@1/5 of ``--recall-queries`` queries against the 1M library, index vs exact. The final
line quotes speed, overlap and recall@5 at 1M, where the index really is approximate (at 20,000
it is exact by design, which would make "within 0.01 of brute force" trivially true). Also
printed: the same at a quarter, half and twice the default ``nprobe`` and at shallower exact
re-ranking (``rerank_candidates``), to show the speed/agreement trade-off around the defaults.

Embeddings are cached under ``settings.cache_dir()/bench_retrieval`` keyed by model id and text
hash, so a rerun only pays for the index work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

from amr_dagster.evol.embeddings import SentenceEmbedder, l2_normalise
from amr_dagster.evol.module_index import ModuleIndex, exact_top_k
from amr_dagster.evol.functions import FunctionParts, module_text, parse_functions
from amr_dagster.settings import cache_dir


def _walk_installed_functions(min_count: int) -> list[FunctionParts]:
    """Documented top-level functions of the stdlib and site-packages (sorted paths, stable)."""
    roots = {Path(sysconfig.get_paths()[key]) for key in ("stdlib", "purelib", "platlib")}
    found: list[FunctionParts] = []
    for root in sorted(roots):
        for path in sorted(root.rglob("*.py")):
            if "test" in path.parts or "tests" in path.parts:
                continue
            try:
                functions = parse_functions(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError, OSError):
                continue
            found.extend(f for f in functions if f.description)
    return found


def load_functions(min_count: int) -> tuple[list[FunctionParts], str]:
    """Real documented functions: the shared corpus when available, else installed code."""
    try:
        from bench.corpus import real_functions  # written in parallel; preferred when present
    except ImportError:
        return _walk_installed_functions(min_count), "stdlib + site-packages (local ast walk)"
    rows = real_functions(min_count * 3 // 2)  # headroom: pairs are deduplicated afterwards
    rows = rows.iter_rows(named=True) if hasattr(rows, "iter_rows") else rows
    out: list[FunctionParts] = []
    for row in rows:
        code = row["code"] if isinstance(row, dict) else str(row)
        try:
            out.extend(f for f in parse_functions(code)[:1] if f.description)
        except SyntaxError:
            continue
    return out, "bench.corpus.real_functions"


def benchmark_pairs(functions: list[FunctionParts], count: int) -> tuple[list[str], list[str]]:
    """(queries, entries): docstring summary -> undocumented entry text, unique on both sides."""
    seen_queries: set[str] = set()
    seen_entries: set[str] = set()
    pairs = []
    for f in functions:
        query = f.description.strip().split("\n\n", 1)[0].strip()  # the summary paragraph
        entry = module_text(f.name, f.signature, "", f.body)
        if len(query.split()) < 3 or not f.body.strip() or query in seen_queries or entry in seen_entries:
            continue
        seen_queries.add(query)
        seen_entries.add(entry)
        pairs.append((query, entry))
    random.Random(6).shuffle(pairs)
    pairs = pairs[:count]
    return [q for q, _ in pairs], [e for _, e in pairs]


def cached_pairs(count: int) -> tuple[list[str], list[str], str]:
    """``benchmark_pairs`` of ``load_functions``, cached (walking site-packages takes minutes)."""
    try:
        import bench.corpus  # noqa: F401

        origin_key = "corpus"
    except ImportError:
        origin_key = "walk"
    path = cache_dir() / "bench_retrieval" / f"pairs-{origin_key}-{count}.json"
    if path.exists():
        data = json.loads(path.read_text())
        return data["queries"], data["entries"], data["origin"]
    functions, origin = load_functions(count)
    queries, entries = benchmark_pairs(functions, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"origin": origin, "queries": queries, "entries": entries}))
    return queries, entries, origin


def embed_cached(embedder: SentenceEmbedder, texts: list[str], label: str) -> np.ndarray:
    digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:16]
    path = cache_dir() / "bench_retrieval" / f"{embedder.model_id.replace('/', '_')}-{label}-{len(texts)}-{digest}.npy"
    if path.exists():
        return np.load(path)
    start = time.perf_counter()
    vectors = embedder.embed(texts, batch_size=64)
    print(f"  embedded {len(texts)} {label} texts in {time.perf_counter() - start:.0f}s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def recall(ids: np.ndarray, k: int) -> float:
    """Share of queries whose target (query i -> entry i) is among the first k ids."""
    targets = np.arange(ids.shape[0])[:, None]
    return float((ids[:, :k] == targets).any(axis=1).mean())


def quality(queries: np.ndarray, entries: np.ndarray) -> dict[str, float]:
    brute = exact_top_k(entries, queries, 5).ids
    default = ModuleIndex(entries.shape[1])
    default.add(entries)
    default_ids = default.search(queries, 5).ids
    forced = ModuleIndex(entries.shape[1], exact_below=0)
    forced.add(entries)
    forced_ids = forced.search(queries, 5).ids
    result = {
        "brute_r1": recall(brute, 1),
        "brute_r5": recall(brute, 5),
        "default_r1": recall(default_ids, 1),
        "default_r5": recall(default_ids, 5),
        "ivf_r1": recall(forced_ids, 1),
        "ivf_r5": recall(forced_ids, 5),
    }
    print(f"  entries {entries.shape[0]}, IVF path forced: {forced.nlist} cells, nprobe {forced.nprobe}")
    print(f"  brute force          recall@1 {result['brute_r1']:.4f}  recall@5 {result['brute_r5']:.4f}")
    print(f"  index (default cfg)  recall@1 {result['default_r1']:.4f}  recall@5 {result['default_r5']:.4f}"
          f"  ({'IVF' if default.uses_ann else 'exact'} at this size)")
    print(f"  index (IVF forced)   recall@1 {result['ivf_r1']:.4f}  recall@5 {result['ivf_r5']:.4f}", flush=True)
    return result


def perturbed_library(base: np.ndarray, size: int, noise_norm: float, seed: int = 0) -> np.ndarray:
    """``size`` unit vectors: ``base`` itself first (ids 0..len(base)-1, so query i's target is
    still id i), then copies of its rows plus Gaussian noise of norm ~``noise_norm``."""
    rng = np.random.default_rng(seed)
    dim = base.shape[1]
    out = np.empty((size, dim), dtype=np.float32)
    out[: min(size, base.shape[0])] = base[:size]
    sigma = noise_norm / np.sqrt(dim)
    for start in range(base.shape[0], size, 100_000):
        stop = min(size, start + 100_000)
        rows = base[np.arange(start, stop) % base.shape[0]]
        block = rows + rng.standard_normal((stop - start, dim), dtype=np.float32) * sigma
        out[start:stop] = l2_normalise(block)
    return out


def brute_top5(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The baseline: one query, ``scores = X @ q``, argpartition, sort the five."""
    scores = matrix @ q
    top = np.argpartition(-scores, 5)[:5]
    return top[np.argsort(-scores[top])]


def brute_top5_batched(matrix: np.ndarray, queries: np.ndarray, block: int = 32) -> np.ndarray:
    """Exact top-5 of many queries, a few at a time (32 x 1M scores = 128 MB)."""
    return np.concatenate([exact_top_k(matrix, queries[i:i + block], 5).ids for i in range(0, len(queries), block)])


def top5_overlap(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 5 for a, b in zip(found, truth)]))


def scale(base: np.ndarray, queries: np.ndarray, size: int, timed: int) -> dict[str, float]:
    """Speed and agreement at ``size`` entries, and recall@k there of part (a)'s queries."""
    library = perturbed_library(base, size, noise_norm=0.35)
    index = ModuleIndex(library.shape[1])
    start = time.perf_counter()
    for lo in range(0, size, 100_000):
        index.add(library[lo:lo + 100_000])
    build = time.perf_counter() - start
    print(f"  {size} entries added in {max(1, size // 100_000)} batches of 100k: {build:.1f}s "
          f"(IVF {index.nlist} cells, default nprobe {index.nprobe})", flush=True)

    single = queries[:timed]
    start = time.perf_counter()
    brute = [brute_top5(library, q) for q in single]
    brute_time = time.perf_counter() - start
    truth = brute_top5_batched(library, queries)
    brute_r1, brute_r5 = recall(truth, 1), recall(truth, 5)
    print(f"  brute force: {timed / brute_time:.1f} q/s single-query; recall@1 {brute_r1:.4f} recall@5 {brute_r5:.4f} "
          f"over {len(queries)} queries", flush=True)

    default_nprobe, default_rerank = index.nprobe, index.rerank_candidates
    result: dict[str, float] = {}
    settings = [(p, default_rerank) for p in sorted({default_nprobe // 4, default_nprobe // 2, default_nprobe, default_nprobe * 2})]
    settings += [(default_nprobe, r) for r in (default_rerank // 5, default_rerank // 2)]
    for nprobe, rerank in settings:
        if nprobe < 1 or nprobe > index.nlist:
            continue
        index.nprobe_override, index.rerank_candidates = nprobe, rerank
        index.search(single[:1], 5)  # warm-up
        start = time.perf_counter()
        found = [index.search(q[None, :], 5).ids[0] for q in single]
        index_time = time.perf_counter() - start
        ids = index.search(queries, 5).ids
        row = {
            "speedup": brute_time / index_time,
            "index_qps": timed / index_time,
            "overlap": top5_overlap(found, brute),
            "r1": recall(ids, 1),
            "r5": recall(ids, 5),
        }
        default = nprobe == default_nprobe and rerank == default_rerank
        mark = "  <- default" if default else ""
        print(f"  index nprobe {nprobe:4d} rerank {rerank:4d}: {row['index_qps']:7.1f} q/s = {row['speedup']:5.1f}x, top-5 overlap "
              f"{row['overlap']:.3f}, recall@1 {row['r1']:.4f} recall@5 {row['r5']:.4f}{mark}", flush=True)
        if default:
            result = row
    index.nprobe_override, index.rerank_candidates = None, default_rerank
    result.update(build_s=build, brute_r1=brute_r1, brute_r5=brute_r5)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=20_000)
    parser.add_argument("--scale-size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300, help="timed single queries at scale")
    parser.add_argument("--recall-queries", type=int, default=2000, help="queries whose recall is measured at scale")
    parser.add_argument("--query-tokens", type=int, default=64, help="token cap per query (CPU budget)")
    parser.add_argument("--entry-tokens", type=int, default=32, help="token cap per entry (CPU budget)")
    args = parser.parse_args(argv)
    total = time.perf_counter()

    query_embedder = SentenceEmbedder(max_seq_length=args.query_tokens)
    entry_embedder = SentenceEmbedder(max_seq_length=args.entry_tokens)
    print(f"model {query_embedder.model_id} (queries), {entry_embedder.model_id} (entries)", flush=True)
    query_texts, entry_texts, origin = cached_pairs(args.functions)
    print(f"(a) quality: {len(query_texts)} unique functions from {origin}", flush=True)
    if len(query_texts) < args.functions:
        print(f"  warning: only {len(query_texts)} usable functions (wanted {args.functions})", file=sys.stderr)
    queries = embed_cached(query_embedder, query_texts, "queries")
    entries = embed_cached(entry_embedder, entry_texts, "entries")
    quality(queries, entries)

    print(f"(b) scale: {args.scale_size} entries, {args.queries} timed single queries, "
          f"recall over {min(args.recall_queries, len(queries))} queries", flush=True)
    s = scale(entries, queries[: args.recall_queries], args.scale_size, args.queries)
    print(f"total {time.perf_counter() - total:.0f}s")
    print(
        f"retrieval: {s['speedup']:.1f}x brute force at {args.scale_size / 1e6:g}M, top-5 overlap {s['overlap']:.3f}, "
        f"recall@5 {s['r5']:.3f} (brute force {s['brute_r5']:.3f})"
    )


if __name__ == "__main__":
    main()
