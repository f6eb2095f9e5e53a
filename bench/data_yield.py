"""Benchmark: verified pairs per hour of generation settings, on one engine and one set of seeds.

``python -m bench.data_yield --from DATA_DIR [--backend vllm] [--variant NAME:FIELD=VALUE;...]``
``python -m bench.data_yield --samples FRAME... [--variant ...]`` (execution only, no LLM)

Issue 12 asks which generation settings turn a small base model's time into verified pairs.
This runs the pipeline's own C->I (``instructions``), I->R (``responses``) and execution
(``run_in_sandbox``: own tests, then sibling tests; local bubblewrap sandbox) functions on the accepted ``seed_concepts``
rows of a finished run's data root, once per variant, on ONE engine loaded once and without
the LLM cache, so every variant pays for its own calls. A variant is the project defaults
(``GenerationConfig()``, the ``embedded`` profile) with some fields replaced, e.g.
``n16:n_samples=16`` or ``easy:difficulties=easy,easy,medium``.

Per variant: instructions, samples, samples cut at ``max_tokens``, parsed samples, passed
samples, both pass rates (per sample, per parsed sample), instructions with at least one
passing sample or sibling-tests row (what ``verified_pairs`` can keep before the AMR-Evol
stages add any; how many only by sibling tests in brackets), LLM and
sandbox seconds, and **pairs per hour** = instructions with a pass / (LLM + sandbox seconds).
Engine start is excluded and printed apart. With ``--rounds 2`` the variants run in the given
order, then in reverse, so a load change on a shared machine hits each variant at both ends;
counts and seconds are summed over rounds (a variant's calls differ between rounds only by the
engine's sampling: vLLM's CPU build is unseeded).

``--samples`` re-executes samples a run already drew (``--dump`` files, or a data root's
``responses`` frames) under each variant's execution settings (``sibling_tests``,
``min_test_assertions``): the same samples, so the variants differ only in what execution keeps;
it ends ``data_yield: best <name> <n> instructions with a pass, <r>x <first variant>``.

The last line is ``data_yield: best <name> <p> pairs/h, <r>x <first variant>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import polars as pl
import yaml

from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.instructions import instructions
from amr_dagster.generation.parsing import FINISH_LENGTH
from amr_dagster.generation.responses import responses
from amr_dagster.generation.stages import run_in_sandbox
from amr_dagster.llm.registry import EngineSpec, build_engine
from amr_dagster.outcomes import accepted, reason_prefix
from amr_dagster.sandbox.auto import open_sandbox
from amr_dagster.sandbox.base import Limits
from amr_dagster.schemas import own_and_sibling_rows


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME:FIELD=VALUE;FIELD=VALUE`` (values in YAML; tuple fields take a comma list)."""
    name, _, body = text.partition(":")
    defaults = {f.name: getattr(GenerationConfig(), f.name) for f in fields(GenerationConfig)}
    overrides = {}
    for part in filter(None, body.split(";")):
        key, _, raw = part.partition("=")
        if key not in defaults:
            raise SystemExit(f"unknown GenerationConfig field {key!r} in variant {text!r}")
        if isinstance(defaults[key], tuple):  # one value or a comma list
            overrides[key] = tuple(v.strip() for v in raw.split(",") if v.strip())
        else:
            overrides[key] = yaml.safe_load(raw)
    return name, overrides


@dataclass
class Tally:
    """One variant's counts and seconds, summed over rounds."""

    instructions: int = 0
    samples: int = 0
    cut: int = 0
    parsed: int = 0
    passed: int = 0
    with_pass: int = 0
    by_siblings: int = 0  # of with_pass: instructions passing only with sibling tests
    llm_s: float = 0.0
    sandbox_s: float = 0.0
    reasons: Counter = field(default_factory=Counter)

    def line(self, name: str) -> str:
        per_sample = self.passed / self.samples if self.samples else 0.0
        per_parsed = self.passed / self.parsed if self.parsed else 0.0
        return (
            f"{name:14s} instr {self.instructions:4d}  samples {self.samples:5d}  cut {self.cut:4d}  "
            f"parsed {self.parsed:4d}  passed {self.passed:3d}  per-sample {per_sample:6.2%}  "
            f"per-parsed {per_parsed:6.2%}  instr-with-pass {self.with_pass:3d} ({self.by_siblings} by siblings)  "
            f"llm {self.llm_s:6.0f}s  sandbox {self.sandbox_s:5.0f}s  "
            + (f"{self.per_hour():6.1f} pairs/h" if self.llm_s else "(execution only)")
        )

    def per_hour(self) -> float:
        seconds = self.llm_s + self.sandbox_s
        return 3600.0 * self.with_pass / seconds if seconds else 0.0


def run_variant(concepts: pl.DataFrame, engine, sandbox, config: GenerationConfig, tally: Tally, dump: Path | None = None) -> None:
    started = time.perf_counter()
    tasks, _ = instructions(concepts, engine, config)
    samples, _ = responses(tasks, engine, config)
    tally.llm_s += time.perf_counter() - started
    tally.instructions += accepted(tasks).height
    execute_variant(samples, sandbox, config, tally, dump)


def execute_variant(samples: pl.DataFrame, sandbox, config: GenerationConfig, tally: Tally, dump: Path | None = None) -> None:
    """The pipeline's execution stage (own tests, then sibling tests when the config says so)."""
    started = time.perf_counter()
    executed = run_in_sandbox(responses=samples, sandbox=sandbox, limits=Limits(), generation=config).frame
    tally.sandbox_s += time.perf_counter() - started
    own = own_and_sibling_rows(executed)[0]
    if dump is not None:  # every sample with its verdict, for reading what failed
        dump.parent.mkdir(parents=True, exist_ok=True)
        samples.join(own.select("id", "sandbox_status", "sandbox_detail", pl.col("status").alias("executed_status")), on="id", how="left").write_parquet(dump)
    tally.samples += samples.height
    tally.cut += samples.filter(pl.col("finish_reason") == FINISH_LENGTH).height
    tally.parsed += accepted(samples).height
    tally.passed += accepted(own).height
    passing = accepted(executed)
    tally.with_pass += passing.get_column("parent_id").n_unique() if passing.height else 0
    tally.by_siblings += executed.height - own.height
    tally.reasons.update(reason_prefix(r) for r in samples.get_column("reject_reason").drop_nulls())


def rescore(paths: list[Path], variants: list[tuple[str, dict]], sandbox) -> dict[str, Tally]:
    """Execution alone, on samples a run already drew (``--dump`` files or ``responses`` frames):
    the LLM seconds are not re-spent, so pairs/h here is per sandbox second; compare instructions
    with a pass."""
    tallies = {name: Tally() for name, _ in variants}
    for path in paths:
        samples = pl.read_parquet(path).drop("sandbox_status", "sandbox_detail", "executed_status", strict=False)
        for name, overrides in variants:
            tallies[name].instructions += samples.get_column("parent_id").n_unique()
            execute_variant(samples, sandbox, replace(GenerationConfig(), **overrides), tallies[name])
            print(f"{path.name}: {tallies[name].line(name)}", flush=True)
    return tallies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--from", dest="data_dir", help="data root of a finished run (seed_concepts frames)")
    parser.add_argument("--backend", default="vllm", choices=("vllm", "llama_cpp"))
    parser.add_argument("--seeds", type=int, default=0, help="use the first N accepted concept rows (0 = all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without graph compilation")
    parser.add_argument("--dump", type=Path, help="write each variant's samples with their verdicts to DUMP/<variant>-<round>.parquet")
    parser.add_argument("--variant", action="append", default=[], help="NAME:FIELD=VALUE;... (repeatable; first = baseline)")
    parser.add_argument("--samples", type=Path, nargs="+", help="no LLM: execute these drawn samples per variant (see rescore)")
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in (args.variant or ["defaults:"])]
    if args.samples:
        with open_sandbox("local") as sandbox:
            report(rescore(args.samples, variants, sandbox), variants[0][0], "instructions with a pass", lambda t: t.with_pass)
        return
    if not args.data_dir:
        parser.error("--from DATA_DIR or --samples FRAME... is needed")

    frames = sorted(Path(args.data_dir, "seed_concepts").glob("*.parquet"))
    if not frames:
        raise SystemExit(f"no seed_concepts frames under {args.data_dir}")
    concepts = accepted(pl.concat([pl.read_parquet(f) for f in frames], how="diagonal_relaxed"))
    if args.seeds:
        concepts = concepts.head(args.seeds)
    configs = {name: replace(GenerationConfig(), **overrides) for name, overrides in variants}
    print(f"{concepts.height} concept rows from {len(frames)} frame(s); variants: "
          + "; ".join(f"{n} {o or '(defaults)'}" for n, o in variants), flush=True)

    started = time.perf_counter()
    engine = build_engine(EngineSpec(backend=args.backend, enforce_eager=args.enforce_eager))
    sandbox = open_sandbox("local")
    print(f"engine start (excluded): {time.perf_counter() - started:.0f}s ({engine.model_id})", flush=True)
    tallies = {name: Tally() for name, _ in variants}
    try:
        for round_no in range(args.rounds):
            order = list(configs) if round_no % 2 == 0 else list(reversed(configs))
            for name in order:
                dump = args.dump / f"{name}-{round_no + 1}.parquet" if args.dump else None
                run_variant(concepts, engine, sandbox, configs[name], tallies[name], dump)
                print(f"round {round_no + 1} {tallies[name].line(name)}", flush=True)
    finally:
        sandbox.close()
        engine.close()
    report(tallies, variants[0][0], "pairs/h", Tally.per_hour)


def report(tallies: dict[str, Tally], first: str, unit: str, score) -> None:
    print()
    for name, tally in tallies.items():
        print(tally.line(name))
        print(f"{'':14s} rejections: {dict(tally.reasons.most_common(6))}")
    best = max(tallies, key=lambda n: score(tallies[n]))
    base = score(tallies[first])
    ratio = score(tallies[best]) / base if base else float("inf")
    print(f"data_yield: best {best} {score(tallies[best]):.1f} {unit}, {ratio:.2f}x {first}")


if __name__ == "__main__":  # vLLM starts its engine core with multiprocessing: keep the guard
    sys.exit(main())
