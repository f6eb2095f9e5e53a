"""Benchmark: seed functions mined and filtered per second, and peak memory as the corpus grows.

    python -m bench.mining [--functions 20000]

Streams the benchmark corpus (``bench.corpus``: the stdlib, then the venv's site-packages)
file by file through ``mine_source``, and every ``CHUNK`` mined functions through
``filter_seeds`` with pyright off (decontamination and the cheap rules on), the way a
pipeline over a large seed set should: nothing but the current chunk is held.

Functions/s is wall-clock, as a user sees it; on a shared machine the CPU-time rate
(``functions_per_cpu_s``, printed above the last line) is the steadier figure.

Each size runs in a fresh interpreter so its peak resident memory (``ru_maxrss``) is its own;
memory is bounded when the peak at the full corpus stays close to the peak at a quarter of it.
Last line: ``mining: <f> functions/s, peak <m> MiB at <n> functions (<m2> MiB at <n2>)``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from amr_dagster.seeds.filters import FilterConfig, decontaminator_for, filter_seeds
from amr_dagster.seeds.mining import mine_source, rows_to_frame
from amr_dagster.outcomes import ACCEPTED, STATUS
from amr_dagster.seeds.sources import iter_source_files

from .corpus import corpus_sources

CHUNK = 2000


def run(limit: int) -> dict:
    """Mine and filter the first ``limit`` functions of the corpus; timings and counts."""
    config = FilterConfig(typecheck=False)
    decontaminator = decontaminator_for(config)
    started = time.perf_counter()
    cpu_started = time.process_time()
    mine_s = filter_s = 0.0
    files = functions = kept = 0
    reasons: Counter[str] = Counter()
    chunk: list[dict] = []

    def flush() -> None:
        nonlocal filter_s, kept
        began = time.perf_counter()
        out, stats = filter_seeds(rows_to_frame(chunk), config, decontaminator=decontaminator)
        filter_s += time.perf_counter() - began
        kept += stats["accepted"]
        reasons.update(stats["rejected_by_check"])
        chunk.clear()

    for prefix, location in corpus_sources():
        if functions >= limit:
            break
        sources = iter_source_files(location)
        while functions < limit:
            began = time.perf_counter()
            src = next(sources, None)
            if src is None:
                mine_s += time.perf_counter() - began
                break
            files += 1
            rows = [r for r in mine_source(src, prefix) if r[STATUS] == ACCEPTED][: limit - functions]
            mine_s += time.perf_counter() - began
            functions += len(rows)
            chunk.extend(rows)
            if len(chunk) >= CHUNK:
                flush()
    if chunk:
        flush()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {
        "functions": functions,
        "files": files,
        "wall_s": round(wall, 2),
        "mine_s": round(mine_s, 2),
        "filter_s": round(filter_s, 2),
        "cpu_s": round(cpu, 2),
        "functions_per_s": round(functions / wall, 1),
        "functions_per_cpu_s": round(functions / cpu, 1),
        "accepted_after_filters": kept,
        "rejected_by_check": dict(reasons.most_common()),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _run_in_child(limit: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "bench.mining", "--child", str(limit)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],  # the repo root, where ``bench`` is importable
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="seed functions mined and filtered per second")
    parser.add_argument("--functions", type=int, default=20000, help="corpus size (functions)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run(args.child)))
        return
    small = _run_in_child(max(1, args.functions // 4))
    full = _run_in_child(args.functions)
    for name, result in (("quarter", small), ("full", full)):
        print(f"{name}: {json.dumps(result)}")
    if full["functions"] < args.functions:
        print(f"note: the corpus holds only {full['functions']} functions")
    print(
        f"mining: {full['functions_per_s']:.0f} functions/s, peak {full['peak_rss_mib']:.0f} MiB at "
        f"{full['functions']} functions ({small['peak_rss_mib']:.0f} MiB at {small['functions']})"
    )


if __name__ == "__main__":
    main()
