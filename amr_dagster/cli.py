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


def _run_config(args: argparse.Namespace, selected: list[str]) -> dict:
    ops: dict[str, dict] = {}
    if "filtered_seeds" in selected:
        ops["filtered_seeds"] = {"config": {"typecheck": not args.no_typecheck, "docstring_judge": not args.no_judge}}
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": "INFO" if args.verbose else "WARNING"}}}}


def cmd_run(args: argparse.Namespace) -> int:
    if args.max_seeds is None and not args.seeds and "AMR_MAX_SEEDS" not in os.environ:
        args.max_seeds = DEFAULT_STDLIB_MAX_SEEDS
    _prepare_environment(args)
    import dagster as dg

    from amr_dagster import progress
    from amr_dagster.cli_live import TerminalProgress, stage_hooks
    from amr_dagster.seeds.batches import BatchRegistry
    from amr_dagster.definitions import defs
    from amr_dagster.settings import data_dir
    from amr_dagster.seeds.stdlib_batch import write_stdlib_batch
    from amr_dagster.storage import FrameStore
    from assets import GLOBAL_ASSETS, PARTITIONED_ASSETS
    from assets.partitions import seed_batches
    from sensors.seed_sensor import PIPELINE_JOB

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
        print(f"unknown asset(s) {unknown}; choose from {order}", file=sys.stderr)
        return 2
    print(f"partition {batch.key}: materializing {', '.join(selected)} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    store = FrameStore(data_dir())
    # Each stage's line is printed the moment the stage finishes; long stages draw a progress bar.
    terminal, printed = TerminalProgress(), set()

    def stage_done(name: str, ok: bool) -> None:
        printed.add(name)
        terminal.line(_stage_line(store, name, batch.key, global_names) if ok else f"{name:<22}{'FAILED':>28}")

    print(f"\n{'stage':<22}{'rows':>8}{'accepted':>10}{'rejected':>10}  top rejection reasons")
    started = time.perf_counter()
    job = defs.resolve_job_def(PIPELINE_JOB).with_hooks(stage_hooks(stage_done))
    with progress.sink(terminal):
        result = job.execute_in_process(
            partition_key=batch.key,
            instance=instance,
            asset_selection=[dg.AssetKey.from_user_string(s) for s in selected],
            run_config=_run_config(args, selected),
            raise_on_error=False,
        )
    wall = time.perf_counter() - started
    for name in selected:
        if name not in printed:
            print(_stage_line(store, name, batch.key, global_names))
    _print_pass_rate(store, batch.key, selected)
    if "instruction_dataset" in selected:
        _print_dataset(result)
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            print(f"CHECK FAILED: {check.asset_key.to_user_string()} {check.check_name}: {check.metadata}")
    print(f"\nrun {result.run_id} {'succeeded' if result.success else 'FAILED'} in {wall:.1f}s; outputs under {data_dir()}")
    print(f"open the UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml")
    return 0 if result.success else 1


def _stage_line(store, name: str, key: str, global_names: set[str]) -> str:
    """One row of the run's table: rows, accepted, rejected and the top rejection reasons."""
    from amr_dagster.outcomes import family_counts, summarize

    if name in global_names:
        return f"{name:<22}{'(global) done':>28}"
    if not store.exists(name, key):
        return f"{name:<22}{'(not materialized)':>28}"
    counts = summarize(store.read(name, key))
    reasons = ", ".join(f"{r} {n}" for r, n in list(family_counts(counts["rejected_by_reason"]).items())[:4])
    return f"{name:<22}{counts['rows']:>8}{counts['accepted']:>10}{counts['rejected']:>10}  {reasons}"


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


def _data_root(args: argparse.Namespace) -> Path:
    from amr_dagster.settings import data_dir

    if args.data_dir:
        return Path(args.data_dir).resolve()
    return data_dir() if "AMR_DATA_DIR" in os.environ else (_default_home() / "data").resolve()


def _partitioned_stages() -> list[str]:
    from assets import PARTITIONED_ASSETS

    return [key.to_user_string() for a in PARTITIONED_ASSETS for key in a.keys]


def cmd_status(args: argparse.Namespace) -> int:
    from amr_dagster.status import status_report

    print(status_report(_data_root(args), _partitioned_stages(), batch=args.batch))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from amr_dagster.show import show, show_report

    stages = _partitioned_stages()
    if args.stage not in stages:
        print(f"unknown stage {args.stage!r}; choose from {', '.join(stages)}", file=sys.stderr)
        return 2
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    try:
        selection = show(_data_root(args), args.stage, batch=args.batch, rejected=args.rejected,
                         accepted_only=args.accepted, limit=args.limit, columns=columns)
    except LookupError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    print(show_report(selection, args.rejected, max_cell=args.width))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amr-dagster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="register a seed batch and materialize it through Dagster")
    run.add_argument("--seeds", help="a seed file or folder (.py folder, .tar.gz/.zip, .jsonl/.parquet with `content`); default: a standard-library batch")
    run.add_argument("--select", help="comma-separated assets to materialize (default: every stage)")
    run.add_argument("--stdlib-files", type=int, default=int(os.environ.get("AMR_STDLIB_FILES", "120")), help="files in the default standard-library batch (0 = all)")
    run.add_argument("--max-seeds", type=int, default=None, help="cap on deduplicated seeds entering generation (default: 24 for the standard-library batch, none for --seeds; 0 = no cap)")
    run.add_argument("--n-samples", type=int, default=None, help="responses sampled per instruction (default 4)")
    run.add_argument("--data-dir", help="data root (default $AMR_DATA_DIR or ./.amr/data)")
    run.add_argument("--no-typecheck", action="store_true", help="skip the pyright filter")
    run.add_argument("--no-judge", action="store_true", help="skip the LLM docstring judge")
    run.add_argument("--benchmark", action="append", help="extra benchmark JSONL to decontaminate against (repeatable)")
    run.add_argument("--llm-backend", choices=["llama_cpp", "openai", "vllm", "cache_only", "none"], help="engine for both roles (default: embedded llama.cpp)")
    run.add_argument("--sandbox", choices=["auto", "docker", "local"], help="sandbox backend (default auto)")
    run.add_argument("-v", "--verbose", action="store_true", help="show Dagster's step logs")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="seed batches with each stage's yield, and the dataset's size")
    status.add_argument("--data-dir", help="data root (default $AMR_DATA_DIR or ./.amr/data)")
    status.add_argument("--batch", help="only this batch (a key or its unique prefix)")
    status.set_defaults(func=cmd_status)

    show = sub.add_parser("show", help="a stage's rows as a table: what it kept, what it rejected and why")
    show.add_argument("stage", help="a partitioned stage, e.g. filtered_seeds, responses, executed_responses")
    show.add_argument("--batch", help="batch key or unique prefix (default: the newest batch with this stage)")
    picked = show.add_mutually_exclusive_group()
    picked.add_argument("--rejected", nargs="?", const="", metavar="REASON", help="only rejected rows (whose reason starts with REASON, if given)")
    picked.add_argument("--accepted", action="store_true", help="only accepted rows")
    show.add_argument("--limit", type=int, default=20, help="rows to print (0 = all; default 20)")
    show.add_argument("--columns", help="comma-separated columns to print instead of the stage's default ones")
    show.add_argument("--width", type=int, default=60, help="maximum characters per cell (default 60)")
    show.add_argument("--data-dir", help="data root (default $AMR_DATA_DIR or ./.amr/data)")
    show.set_defaults(func=cmd_show)

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
