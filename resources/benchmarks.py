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
    """``extra_files``: benchmark JSONL paths beyond HumanEval (the CLI's ``--benchmark``); empty =
    the deployment's ``AMR_BENCHMARK_FILES`` (``os.pathsep``-separated) where the step runs."""

    extra_files: list[str] = []

    def files(self) -> tuple[str, ...]:
        if self.extra_files:
            return tuple(self.extra_files)
        return tuple(p for p in os.environ.get("AMR_BENCHMARK_FILES", "").split(os.pathsep) if p)

    def names(self) -> list[str]:
        return ["HumanEval", *self.files()]

    def decontaminator(self) -> Decontaminator:
        """Built once per process and file set (the n-gram index is the expensive part)."""
        return _decontaminator(self.files())
