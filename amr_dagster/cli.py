"""``amr-dagster``: the command line.

``run`` registers a seed batch as a partition and materializes it through the same Dagster
definitions the UI loads (a persistent instance, so the runs show up in ``dagster dev``), then
prints what each stage kept and rejected. ``verify`` re-verifies any JSONL dataset in the
sandbox. This module is the driver, not domain logic, so it is (with ``definitions.py``) the
one other place in ``amr_dagster`` that imports Dagster, lazily, inside ``run``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


# Sized so the default run (Gemma 3 270M on 2 CPU cores) finishes in about 20 minutes
# (12 seeds took 8.5 min on a quiet 2-core machine; generation time grows linearly with seeds).
DEFAULT_STDLIB_MAX_SEEDS = 24


def _default_home() -> Path:
    return Path(os.environ.get("AMR_HOME", "./.amr"))


def _prepare_environment(args: argparse.Namespace) -> None:
    """Environment the definitions read at load time; must be set before importing them."""
    home = _default_home()
    if args.data_dir:
        os.environ["AMR_DATA_DIR"] = str(Path(args.data_dir).resolve())
    os.environ.setdefault("AMR_DATA_DIR", str((home / "data").resolve()))
    if "DAGSTER_HOME" not in os.environ:
        dagster_home = (home / "dagster").resolve()
        dagster_home.mkdir(parents=True, exist_ok=True)
        config = dagster_home / "dagster.yaml"
        if not config.exists():  # the machine may be offline: no telemetry
            config.write_text("telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(dagster_home)
    if getattr(args, "llm_backend", None):
        os.environ["AMR_LLM_BACKEND"] = args.llm_backend
    if getattr(args, "max_seeds", None) is not None:
        os.environ["AMR_MAX_SEEDS"] = str(args.max_seeds)
    if getattr(args, "n_samples", None) is not None:
        os.environ["AMR_N_SAMPLES"] = str(args.n_samples)
    if getattr(args, "benchmark", None):
        os.environ["AMR_BENCHMARK_FILES"] = os.pathsep.join(str(Path(p).resolve()) for p in args.benchmark)
    if getattr(args, "sandbox", None):
        os.environ["AMR_SANDBOX_BACKEND"] = args.sandbox
    if getattr(args, "profile", None):
        os.environ["AMR_PROFILE"] = args.profile


def _run_config(args: argparse.Namespace, selected: list[str]) -> dict:
    ops: dict[str, dict] = {}
    if "filtered_seeds" in selected:
        ops["filtered_seeds"] = {"config": {"typecheck": not args.no_typecheck, "docstring_judge": not args.no_judge}}
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": "INFO" if args.verbose else "WARNING"}}}}


def cmd_run(args: argparse.Namespace) -> int:
    from amr_dagster.profiles import UnknownProfile, load_profile

    try:
        load_profile(args.profile or os.environ.get("AMR_PROFILE") or "embedded")
    except UnknownProfile as err:
        print(f"amr-dagster run: {err}", file=sys.stderr)
        return 2
    if args.max_seeds is None and not args.seeds and "AMR_MAX_SEEDS" not in os.environ:
        args.max_seeds = DEFAULT_STDLIB_MAX_SEEDS
    _prepare_environment(args)
    import dagster as dg

    from amr_dagster.seeds.batches import BatchRegistry
    from amr_dagster.definitions import defs
    from amr_dagster.outcomes import family_counts, summarize
    from amr_dagster.settings import data_dir
    from amr_dagster.seeds.stdlib_batch import write_stdlib_batch
    from amr_dagster.storage import FrameStore
    from assets import EVAL_ASSETS, GLOBAL_ASSETS, PARTITIONED_ASSETS
    from assets.partitions import seed_batches
    from sensors.seed_sensor import PIPELINE_JOB

    evaluations = [key.to_user_string() for a in EVAL_ASSETS for key in a.keys]
    requested = [s.strip() for s in (args.select or "").split(",") if s.strip()]
    if requested and all(s in evaluations for s in requested):
        return _run_evaluation(args, dg.DagsterInstance.get(), requested)
    if args.seeds:
        location = Path(args.seeds)
    else:
        location = write_stdlib_batch(_default_home() / "builtin_seeds", args.stdlib_files)
        print(f"seed batch: {args.stdlib_files or 'all'} files of this interpreter's standard library -> {location}")
    batch = BatchRegistry(data_dir()).register(location)
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(seed_batches.name, [batch.key])

    order = [key.to_user_string() for a in (*PARTITIONED_ASSETS, *GLOBAL_ASSETS) for key in a.keys]
    global_names = {key.to_user_string() for a in GLOBAL_ASSETS for key in a.keys}
    selected = order if not args.select else [s.strip() for s in args.select.split(",") if s.strip()]
    unknown = [s for s in selected if s not in order]
    if unknown:
        hint = f" ({', '.join(evaluations)} runs on its own: --select {evaluations[0]})" if set(unknown) & set(evaluations) else ""
        print(f"unknown asset(s) {unknown}; choose from {order}{hint}", file=sys.stderr)
        return 2
    print(f"partition {batch.key}: materializing {', '.join(selected)} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    started = time.perf_counter()
    job = defs.resolve_job_def(PIPELINE_JOB)
    result = job.execute_in_process(
        partition_key=batch.key,
        instance=instance,
        asset_selection=[dg.AssetKey.from_user_string(s) for s in selected],
        run_config=_run_config(args, selected),
        raise_on_error=False,
    )
    wall = time.perf_counter() - started

    store = FrameStore(data_dir())
    print(f"\n{'stage':<22}{'rows':>8}{'accepted':>10}{'rejected':>10}  top rejection reasons")
    for name in selected:
        if name in global_names:
            continue
        if not store.exists(name, batch.key):
            print(f"{name:<22}{'(not materialized)':>28}")
            continue
        counts = summarize(store.read(name, batch.key))
        reasons = ", ".join(f"{r} {n}" for r, n in list(family_counts(counts["rejected_by_reason"]).items())[:4])
        print(f"{name:<22}{counts['rows']:>8}{counts['accepted']:>10}{counts['rejected']:>10}  {reasons}")
    _print_pass_rate(store, batch.key, selected)
    if "instruction_dataset" in selected:
        _print_dataset(result)
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            print(f"CHECK FAILED: {check.asset_key.to_user_string()} {check.check_name}: {check.metadata}")
    print(f"\nrun {result.run_id} {'succeeded' if result.success else 'FAILED'} in {wall:.1f}s; outputs under {data_dir()}")
    print(f"open the UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml")
    return 0 if result.success else 1


def _run_evaluation(args: argparse.Namespace, instance, selected: list[str]) -> int:
    """Materialize evaluation assets (no seed batch: they score a model) and print the scores."""
    import dagster as dg

    from amr_dagster.definitions import EVALUATION_JOB, defs

    config: dict = {}
    if args.humaneval_limit is not None:
        config["limit"] = args.humaneval_limit
    if args.humaneval_samples is not None:
        config["n_samples"] = args.humaneval_samples
    started = time.perf_counter()
    result = defs.resolve_job_def(EVALUATION_JOB).execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey.from_user_string(s) for s in selected],
        run_config={"ops": {name: {"config": config} for name in selected},
                    "loggers": {"console": {"config": {"log_level": "INFO" if args.verbose else "WARNING"}}}},
        raise_on_error=False,
    )
    for name in selected:
        for mat in result.asset_materializations_for_node(name):
            meta = {k: v.value for k, v in mat.metadata.items()}
            scores = ", ".join(f"{k} = {v}" for k, v in meta.items() if k.startswith("pass@"))
            print(f"{name}: {meta.get('problems')} problems, model {meta.get('model_id')}: {scores}; rows -> {meta.get('path')}")
    print(f"\nrun {result.run_id} {'succeeded' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s")
    return 0 if result.success else 1


def _print_pass_rate(store, key: str, selected: list[str]) -> None:
    import polars as pl

    if "executed_responses" in selected and store.exists("executed_responses", key):
        executed = store.read("executed_responses", key)
        judged = executed.filter(pl.col("sandbox_status") != "infra_error")
        passed = judged.filter(pl.col("sandbox_status") == "passed").height
        rate = passed / judged.height if judged.height else 0.0
        print(f"\nsandbox pass rate of direct samples: {passed}/{judged.height} = {rate:.1%}")


def _print_dataset(result) -> None:
    for mat in result.asset_materializations_for_node("instruction_dataset"):
        meta = {k: v.value for k, v in mat.metadata.items()}
        print(f"instruction dataset: {meta.get('exported_pairs')} pairs (from {meta.get('verified_pairs_in')} verified) -> {meta.get('jsonl')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amr-dagster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="register a seed batch and materialize it through Dagster")
    run.add_argument("--seeds", help="a seed file or folder (.py folder, .tar.gz/.zip, .jsonl/.parquet with `content`); default: a standard-library batch")
    run.add_argument("--select", help="comma-separated assets to materialize (default: every stage)")
    run.add_argument("--stdlib-files", type=int, default=int(os.environ.get("AMR_STDLIB_FILES", "120")), help="files in the default standard-library batch (0 = all)")
    run.add_argument("--max-seeds", type=int, default=None, help="cap on deduplicated seeds entering generation (default: 24 for the standard-library batch, none for --seeds; 0 = no cap)")
    run.add_argument("--profile", help="settings profile: embedded (default; small-model settings) or selfcodealign (the reference's settings); files under amr_dagster/prompts/profiles/")
    run.add_argument("--n-samples", type=int, default=None, help="responses sampled per instruction (default: the profile's, 4 for embedded)")
    run.add_argument("--data-dir", help="data root (default $AMR_DATA_DIR or ./.amr/data)")
    run.add_argument("--no-typecheck", action="store_true", help="skip the pyright filter")
    run.add_argument("--no-judge", action="store_true", help="skip the LLM docstring judge")
    run.add_argument("--benchmark", action="append", help="extra benchmark JSONL to decontaminate against (repeatable)")
    run.add_argument("--llm-backend", choices=["llama_cpp", "openai", "vllm", "cache_only", "none"], help="engine for both roles (default: embedded llama.cpp)")
    run.add_argument("--sandbox", choices=["auto", "docker", "local"], help="sandbox backend (default auto)")
    run.add_argument("--humaneval-limit", type=int, default=None, help="humaneval_eval: first N problems only (default all 164)")
    run.add_argument("--humaneval-samples", type=int, default=None, help="humaneval_eval: sampled completions per problem for pass@k (default 0: greedy pass@1 only)")
    run.add_argument("-v", "--verbose", action="store_true", help="show Dagster's step logs")
    run.set_defaults(func=cmd_run)

    from amr_dagster.sandbox.verify import add_verify_arguments, run_verify

    verify = sub.add_parser("verify", help="run rows with `code` and `tests` in the sandbox; write them with verdicts")
    add_verify_arguments(verify)
    verify.set_defaults(func=run_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
