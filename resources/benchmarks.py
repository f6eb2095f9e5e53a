"""The benchmarks every decontamination step checks against: HumanEval always, plus any
JSONL the user names. One resource, so mining, the seed filters and the dataset export agree."""

import os
from functools import lru_cache

import dagster as dg

from amr_dagster.seeds.decontamination import Decontaminator


@lru_cache(maxsize=8)
def _decontaminator(files: tuple[str, ...]) -> Decontaminator:
    return Decontaminator.default(files)


class BenchmarkSet(dg.ConfigurableResource):
    """``extra_files``: benchmark JSONL paths beyond HumanEval (``AMR_BENCHMARK_FILES``,
    separated by ``os.pathsep``)."""

    extra_files: list[str] = []

    @classmethod
    def from_env(cls) -> "BenchmarkSet":
        raw = os.environ.get("AMR_BENCHMARK_FILES", "")
        return cls(extra_files=[p for p in raw.split(os.pathsep) if p])

    def decontaminator(self) -> Decontaminator:
        """Built once per process and file set (the n-gram index is the expensive part)."""
        return _decontaminator(tuple(self.extra_files))
