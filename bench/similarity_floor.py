"""Measuring the retrieval similarity floor of AMR-Evol (``EvolConfig.min_similarity``).

Run: ``python -m bench.similarity_floor`` (``--functions N``, default 1000 per side).

Why a floor: the evolution prompt shows the teacher the top library modules for each
decomposed module. Without a floor it is always shown ``top_k`` modules, however unrelated,
and a small teacher copies what it is shown. The floor should keep the modules that are the
right one and drop the best-of-a-bad-lot.

How: real documented functions of this interpreter's standard library (the library's own
parser over every stdlib file, tests excluded), deduplicated and shuffled with a fixed seed,
split in two halves. The library holds the first half as ``module_text`` entries *without*
their docstrings (as harvested, undocumented code enters it). Every function of both halves
asks the library with ``query_text(name, signature, docstring summary)``, the form evolution's
queries take. For a first-half query the right module is in the library: "related" when it is
the top-1 hit. For a second-half query it is not: its top-1 similarity is what an unrelated
module scores. For each floor t (steps of 0.01) we count the related hits kept (similarity >= t)
and the unrelated top-1s let through, and take the t that maximises kept - let through
(Youden's J). Embeddings: the library's own embedder (all-MiniLM-L6-v2, full length).
The last line prints the chosen floor.
"""

from __future__ import annotations

import argparse
import random
import sysconfig
import time
from pathlib import Path

import numpy as np

from amr_dagster.evol.embeddings import SentenceEmbedder
from amr_dagster.evol.functions import module_text, parse_functions, query_text


def stdlib_functions() -> list:
    root = Path(sysconfig.get_paths()["stdlib"])
    found, seen = [], set()
    for path in sorted(root.rglob("*.py")):
        if {"test", "tests", "site-packages", "idlelib"} & set(path.parts):
            continue
        try:
            functions = parse_functions(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError, OSError):
            continue
        for f in functions:
            summary = (f.description or "").strip().split("\n\n", 1)[0].strip()
            if len(summary.split()) < 3 or not f.body.strip() or summary in seen:
                continue
            seen.add(summary)
            found.append((f, summary))
    random.Random(16).shuffle(found)
    return found


def measure(per_side: int) -> dict:
    functions = stdlib_functions()[: 2 * per_side]
    half = len(functions) // 2
    inside, outside = functions[:half], functions[half:]
    embedder = SentenceEmbedder()
    started = time.perf_counter()
    library = embedder.embed([module_text(f.name, f.signature, "", f.body) for f, _ in inside], batch_size=64)
    queries = embedder.embed([query_text(f.name, f.signature, s) for f, s in functions], batch_size=64)
    embed_s = time.perf_counter() - started
    sims = queries @ library.T
    top1 = sims.argmax(axis=1)
    best = sims.max(axis=1)
    related = best[:half][top1[:half] == np.arange(half)]  # the right module is the top hit
    unrelated = best[half:]
    thresholds = np.round(np.arange(0.0, 1.0, 0.01), 2)
    kept = np.array([(related >= t).sum() / half for t in thresholds])
    through = np.array([(unrelated >= t).mean() for t in thresholds])
    j = kept - through
    floor = float(thresholds[int(j.argmax())])
    return {
        "functions": len(functions), "embed_s": round(embed_s, 1), "recall_at_1": round(len(related) / half, 3),
        "related_pct": np.percentile(related, [10, 25, 50, 75, 90]).round(3).tolist(),
        "unrelated_pct": np.percentile(unrelated, [10, 25, 50, 75, 90]).round(3).tolist(),
        "floor": floor, "kept_at_floor": round(float(kept[j.argmax()]), 3), "through_at_floor": round(float(through[j.argmax()]), 3),
        "through_at_zero": round(float(through[0]), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=1000, help="functions per side (library / held out)")
    args = parser.parse_args(argv)
    r = measure(args.functions)
    print(f"{r['functions']} stdlib functions ({r['functions'] // 2} in the library), embedded in {r['embed_s']}s")
    print(f"top-1 is the right module for {r['recall_at_1']:.1%} of the queries whose module is in the library")
    print(f"top-1 similarity, right module (p10 p25 p50 p75 p90):      {r['related_pct']}")
    print(f"top-1 similarity, module not in library (p10 p25 p50 p75 p90): {r['unrelated_pct']}")
    print(f"floor 0: unrelated top-1 shown for {r['through_at_zero']:.0%} of held-out queries")
    print(f"floor {r['floor']}: right modules kept {r['kept_at_floor']:.1%} of queries, unrelated let through {r['through_at_floor']:.1%}")
    print(f"measured similarity floor: {r['floor']}")


if __name__ == "__main__":
    main()
