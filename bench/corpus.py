"""A corpus of real Python functions for benchmarks: mined from this interpreter's standard
library, then the venv's site-packages, in a fixed order.

The corpus is deterministic for a given environment (same interpreter, same installed
packages): roots in a fixed order, files in sorted path order, functions in line order.
"""

from __future__ import annotations

import importlib.metadata
import sys
import sysconfig
from pathlib import Path
from typing import Iterator

import polars as pl

from amr_dagster.ids import stable_id
from amr_dagster.schemas import SEED_FUNCTION_COLUMNS
from amr_dagster.seeds.mining import mine_tree
from amr_dagster.settings import cache_dir


#: Folders of the stdlib that are not the stdlib (the base interpreter's own installs).
NOT_STDLIB = ("site-packages", "dist-packages")


def corpus_roots() -> list[Path]:
    """The folders mined, in order: the stdlib, then the venv's site-packages."""
    candidates = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    roots: list[Path] = []
    for candidate in candidates:
        path = Path(candidate)
        if path.is_dir() and all(path.resolve() != r.resolve() for r in roots):
            roots.append(path)
    return roots


def corpus_sources() -> Iterator[tuple[str, Path]]:
    """(name prefix, file or folder) units to mine, in order; the stdlib without the base
    interpreter's site-packages."""
    stdlib, *others = corpus_roots()
    for child in sorted(stdlib.iterdir()):
        if child.name not in NOT_STDLIB and (child.is_dir() or child.suffix == ".py"):
            yield f"stdlib/{child.name}", child
    for root in others:
        yield root.name, root


def iter_real_functions(limit: int | None = None) -> Iterator[dict]:
    """Accepted seed rows of the corpus, streamed; ``source_path`` names where each came from."""
    count = 0
    for prefix, location in corpus_sources():
        for row in mine_tree(location):
            row["source_path"] = prefix if location.is_file() else f"{prefix}/{row['source_path']}"
            yield row
            count += 1
            if limit is not None and count >= limit:
                return


def real_functions(min_count: int = 20000, use_cache: bool = True) -> list[dict]:
    """The first ``min_count`` accepted function rows of the corpus (fewer only if the
    environment holds fewer, which is reported on stderr).

    Mining 20,000 functions takes a minute or more, so the result is cached as Parquet under
    ``cache_dir()/bench-corpus``, keyed by everything that decides it: the count, the
    interpreter, the installed distributions and the miner's own source.
    """
    cache = cache_dir() / "bench-corpus" / f"{_corpus_key(min_count)}.parquet"
    if use_cache and cache.exists():
        return pl.read_parquet(cache).to_dicts()
    rows = list(iter_real_functions(limit=min_count))
    if len(rows) < min_count:
        print(f"corpus: only {len(rows)} functions available in {corpus_roots()}", file=sys.stderr)
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".tmp")
        pl.DataFrame(rows, schema=SEED_FUNCTION_COLUMNS, orient="row").write_parquet(partial)  # corpus order kept
        partial.replace(cache)
    return rows


def _corpus_key(min_count: int) -> str:
    import amr_dagster.seeds.mining
    import amr_dagster.seeds.sources

    distributions = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    sources = [Path(m.__file__ or "").read_bytes() for m in (amr_dagster.seeds.mining, amr_dagster.seeds.sources)]
    return stable_id(min_count, sys.version, *map(str, corpus_roots()), *distributions, *sources)
