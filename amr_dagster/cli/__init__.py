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


# Sized so the default run (Gemma 3 270M on 2 CPU cores) finishes within 20 minutes: with 8
# samples per instruction, 40 and 46 seeds of a 150-file batch took 1007 s and 1033 s on vLLM on
# a quiet 2-core machine, cold caches and engine start included (about 250 s fixed, 27 s per
# instruction), for 26 and 28 instructions. With 6 samples (about 22 s per instruction) 56 seeds
# fit; the 200-file batch holds more than that after the filters.
DEFAULT_STDLIB_MAX_SEEDS = 56
DEFAULT_STDLIB_FILES = 200


def _default_home() -> Path:
    return Path(os.environ.get("AMR_HOME", "./.amr"))


def _dagster_home() -> str:
    """The CLI's own Dagster instance (``$DAGSTER_HOME``, else ``<AMR_HOME>/dagster``)."""
    if "DAGSTER_HOME" not in os.environ:
        dagster_home = (_default_home() / "dagster").resolve()
        dagster_home.mkdir(parents=True, exist_ok=True)
        config = dagster_home / "dagster.yaml"
        if not config.exists():  # the machine may be offline: no telemetry
            config.write_text("telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(dagster_home)
    return os.environ["DAGSTER_HOME"]


def data_root_of(args: argparse.Namespace) -> str:
    """``--data-dir``, else ``$AMR_DATA_DIR``, else ``<AMR_HOME>/data`` (a folder, made absolute,
    or ``s3://bucket/prefix``); always passed to the run."""
    root = str(args.data_dir or os.environ.get("AMR_DATA_DIR") or _default_home() / "data")
    return root if root.startswith("s3://") else str(Path(root).resolve())


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def has_nvidia_gpu() -> bool:
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def default_engine(args: argparse.Namespace) -> dict[str, object] | None:
    """The LLM engine of a run that names none (README command 1): vLLM's in-process engine on
    the embedded model where vLLM is installed, else the embedded llama.cpp (None: the resource
    default). vLLM batches every sample of a stage; ``bench.data_yield`` measured twice the
    samples per hour of llama.cpp's one sequence at a time on 2 cores (README, "What to
    expect"). Not chosen for ``--submit`` (the deployment's settings decide there) nor when a
    deployment variable names a backend. On a CPU it runs eager: graph compilation would
    add minutes to every start."""
    import importlib.util

    if args.llm_backend or getattr(args, "submit", False):
        return None
    if os.environ.get("AMR_GENERATOR_BACKEND") or os.environ.get("AMR_TEACHER_BACKEND") or os.environ.get("AMR_LLM_BACKEND"):
        return None
    if importlib.util.find_spec("vllm") is None:
        return None
    return {"backend": "vllm"} if has_nvidia_gpu() else {"backend": "vllm", "enforce_eager": True}


def run_config(args: argparse.Namespace, selected: list[str], resource_keys: set[str]) -> dict:
    """Every setting of this run as Dagster run config: resource config for the shared
    settings, op config for a stage's own. It is what the run records (and the UI shows), and a
    launch from the launchpad with the same config runs the same way."""
    resources: dict[str, dict] = {"data_root": {"path": data_root_of(args)}}
    ops: dict[str, dict] = {}
    engine = {"backend": args.llm_backend} if args.llm_backend else default_engine(args)
    if engine:
        resources["generator"] = dict(engine)
        resources["teacher"] = dict(engine)
    if args.max_seeds is not None:
        resources.setdefault("generation", {})["max_seeds"] = args.max_seeds
    if args.n_samples is not None:
        resources.setdefault("generation", {})["n_samples"] = args.n_samples
    if args.profile:
        resources.setdefault("generation", {})["profile"] = args.profile
    if args.benchmark:
        resources["benchmarks"] = {"extra_files": [str(Path(p).resolve()) for p in args.benchmark]}
    if args.sandbox:
        resources["sandbox"] = {"backend": args.sandbox}
    if "filtered_seeds" in selected:
        ops["filtered_seeds"] = {"typecheck": not args.no_typecheck, "docstring_judge": not args.no_judge}
    for item in args.set or []:
        target, _, value = item.partition("=")
        owner, _, name = target.partition(".")
        if not name or not _:
            raise SystemExit(f"--set expects OWNER.FIELD=VALUE (a resource or an asset), got {item!r}")
        if owner in resource_keys:
            resources.setdefault(owner, {})[name] = _parse_value(value)
        elif owner in selected:
            ops.setdefault(owner, {})[name] = _parse_value(value)
        else:
            raise SystemExit(f"--set {item!r}: {owner!r} is neither a resource ({sorted(resource_keys)}) nor a selected asset")
    return {
        "resources": {key: {"config": values} for key, values in resources.items()},
        "ops": {key: {"config": values} for key, values in ops.items()},
        "loggers": {"console": {"config": {"log_level": "INFO" if args.verbose else "WARNING"}}},
    }


def cmd_run(args: argparse.Namespace) -> int:
    from amr_dagster.profiles import UnknownProfile, load_profile

    try:
        load_profile(args.profile or "embedded")
    except UnknownProfile as err:
        print(f"amr-dagster run: {err}", file=sys.stderr)
        return 2
    if args.max_seeds is None and not args.seeds:
        args.max_seeds = DEFAULT_STDLIB_MAX_SEEDS
    dagster_home = _dagster_home()
    import dagster as dg

    from amr_dagster import progress
    from amr_dagster.cli.live import TerminalProgress, stage_hooks
    from amr_dagster.storage.layout import DataLayout
    from amr_dagster.definitions import defs
    from amr_dagster.seeds.stdlib_batch import write_stdlib_batch
    from assets import EVAL_ASSETS, GLOBAL_ASSETS, PARTITIONED_ASSETS
    from assets.partitions import seed_batches
    from sensors.seed_sensor import PIPELINE_JOB

    evaluations = [key.to_user_string() for a in EVAL_ASSETS for key in a.keys]
    requested = [s.strip() for s in (args.select or "").split(",") if s.strip()]
    if requested and all(s in evaluations for s in requested):
        return _run_evaluation(args, dg.DagsterInstance.get(), requested, dagster_home)
    data = DataLayout(data_root_of(args))
    if args.seeds:
        location = args.seeds  # a local path or s3://bucket/key (fetched to the local cache)
    else:
        location = write_stdlib_batch(_default_home() / "builtin_seeds", args.stdlib_files)
        print(f"seed batch: {args.stdlib_files or 'all'} files of this interpreter's standard library -> {location}")
    batch = data.batches().register(location)
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
    print(f"partition {batch.key}: materializing {', '.join(selected)} (DAGSTER_HOME={dagster_home})")
    store = data.frames()
    # Each stage's line is printed the moment the stage finishes; long stages draw a progress bar.
    terminal, printed = TerminalProgress(), set()

    def stage_done(name: str, ok: bool) -> None:
        printed.add(name)
        terminal.line(_stage_line(store, name, batch.key, global_names) if ok else f"{name:<22}{'FAILED':>28}")

    config = run_config(args, selected, set(defs.resources))
    if not args.llm_backend and config["resources"].get("generator", {}).get("config", {}).get("backend") == "vllm":
        print("LLM engine: vLLM in-process on the embedded model (installed here; --llm-backend llama_cpp for llama.cpp)")
    if args.submit:
        return _submit_and_follow(args, instance, selected, config, batch.key, store, global_names, data.url)
    print(f"\n{'stage':<22}{'rows':>8}{'accepted':>10}{'rejected':>10}  top rejection reasons")
    started = time.perf_counter()
    job = defs.resolve_job_def(PIPELINE_JOB).with_hooks(stage_hooks(stage_done))
    with progress.sink(terminal):
        result = job.execute_in_process(
            partition_key=batch.key,
            instance=instance,
            asset_selection=[dg.AssetKey.from_user_string(s) for s in selected],
            run_config=config,
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
    print(f"\nrun {result.run_id} {'succeeded' if result.success else 'FAILED'} in {wall:.1f}s; outputs under {data.url}")
    print(f"open the UI: DAGSTER_HOME={dagster_home} .venv/bin/dagster dev -w workspace.yaml")
    return 0 if result.success else 1


def _submit_and_follow(args, instance, selected: list[str], config: dict, key: str, store, global_names: set[str], url: str) -> int:
    """``--submit``: the run goes to the instance's queue (the daemon launches it, as for a UI
    launch); each stage's line is printed as its step ends, and the exit status is the run's."""
    from amr_dagster.cli.submit import follow, run_failure_message, submit
    from amr_dagster.storage.retry import StorageUnavailable
    from sensors.seed_sensor import PIPELINE_JOB

    started = time.perf_counter()
    run = submit(instance, PIPELINE_JOB, selected, config, partition_key=key, workspace=args.workspace)
    print(f"run {run.run_id} submitted to the instance's queue ({type(instance.run_coordinator).__name__})")
    print(f"\n{'stage':<22}{'rows':>8}{'accepted':>10}{'rejected':>10}  top rejection reasons")

    def step_done(step) -> None:
        if step.ok:
            try:
                line = _stage_line(store, step.name, key, global_names)
            except StorageUnavailable as err:  # the run goes on (or fails) on its own; say why there are no counts
                line = f"{step.name:<22}{'done':>28}  (counts unreadable: {err})"
            print(line, flush=True)
        else:
            print(f"{step.name:<22}{'FAILED':>28}  {step.error.splitlines()[0] if step.error else ''}", flush=True)

    try:
        run = follow(instance, run.run_id, step_done, on_status=lambda status: print(f"  [run {status.lower()}]", flush=True))
    except StorageUnavailable as err:  # the instance's database stayed down: the run's end is unknown here
        print(f"run {run.run_id}: lost the instance's storage: {err}\n"
              "the run's worker records how it ended once the database is back (the UI, `dagster run list`); "
              "submit the batch again then if it failed", flush=True)
        return 1
    _print_pass_rate(store, key, selected)
    ok = run.status == run.status.SUCCESS
    if not ok and (reason := run_failure_message(instance, run.run_id)):
        print(f"run failure: {reason}")
    print(f"\nrun {run.run_id} {run.status.value} in {time.perf_counter() - started:.1f}s; outputs under {url}")
    return 0 if ok else 1


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


def _run_evaluation(args: argparse.Namespace, instance, selected: list[str], dagster_home: str) -> int:
    """Materialize evaluation assets (no seed batch: they score a model) and print the scores."""
    import dagster as dg

    from amr_dagster.definitions import EVALUATION_JOB, defs

    config = run_config(args, [], set(defs.resources))
    own: dict = {}
    if args.humaneval_limit is not None:
        own["limit"] = args.humaneval_limit
    if args.humaneval_samples is not None:
        own["n_samples"] = args.humaneval_samples
    config["ops"] = {name: {"config": own} for name in selected}
    started = time.perf_counter()
    result = defs.resolve_job_def(EVALUATION_JOB).execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey.from_user_string(s) for s in selected], run_config=config, raise_on_error=False,
    )
    for name in selected:
        for mat in result.asset_materializations_for_node(name):
            meta = {k: v.value for k, v in mat.metadata.items()}
            scores = ", ".join(f"{k} = {v}" for k, v in meta.items() if k.startswith("pass@"))
            print(f"{name}: {meta.get('problems')} problems, model {meta.get('model_id')}: {scores}; rows -> {meta.get('path')}")
    print(f"\nrun {result.run_id} {'succeeded' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s")
    print(f"open the UI: DAGSTER_HOME={dagster_home} .venv/bin/dagster dev -w workspace.yaml")
    return 0 if result.success else 1


def _print_pass_rate(store, key: str, selected: list[str]) -> None:
    import polars as pl

    from amr_dagster.sandbox.base import Status
    from amr_dagster.schemas import own_and_sibling_rows

    if "executed_responses" in selected and store.exists("executed_responses", key):
        executed = store.read("executed_responses", key)
        own, pooled = own_and_sibling_rows(executed)
        judged = own.filter(pl.col("sandbox_status") != Status.INFRA_ERROR.value)
        passed = judged.filter(pl.col("sandbox_status") == Status.PASSED.value).height
        rate = passed / judged.height if judged.height else 0.0
        print(f"\nsandbox pass rate of direct samples: {passed}/{judged.height} = {rate:.1%}")
        if pooled.height:
            print(
                f"instructions without a passing sample whose code passed its siblings' tests: {pooled.height} "
                "(one row each in executed_responses, tests_from names the samples)"
            )


def _print_dataset(result) -> None:
    for mat in result.asset_materializations_for_node("instruction_dataset"):
        meta = {k: v.value for k, v in mat.metadata.items()}
        print(f"instruction dataset: {meta.get('exported_pairs')} pairs (from {meta.get('verified_pairs_in')} verified) -> {meta.get('data')}")


def _partitioned_stages() -> list[str]:
    from assets import PARTITIONED_ASSETS

    return [key.to_user_string() for a in PARTITIONED_ASSETS for key in a.keys]


def cmd_status(args: argparse.Namespace) -> int:
    from amr_dagster.cli.status import status_report

    print(status_report(data_root_of(args), _partitioned_stages(), batch=args.batch))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from amr_dagster.cli.show import show, show_report

    stages = _partitioned_stages()
    if args.stage not in stages:
        print(f"unknown stage {args.stage!r}; choose from {', '.join(stages)}", file=sys.stderr)
        return 2
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    try:
        selection = show(data_root_of(args), args.stage, batch=args.batch, rejected=args.rejected,
                         accepted_only=args.accepted, limit=args.limit, columns=columns)
    except LookupError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    print(show_report(selection, args.rejected, max_cell=args.width))
    return 0


def cmd_pools(args: argparse.Namespace) -> int:
    """Set every pool's limit on the instance ($DAGSTER_HOME): ``minhash_dedup`` and
    ``module_library`` at 1, the others from ``AMR_POOL_<NAME>`` or ``--set NAME=LIMIT``."""
    from amr_dagster.pools import pool_limits

    overrides = {}
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise SystemExit(f"--set expects POOL=LIMIT, got {item!r}")
        overrides[name] = int(value)
    try:
        limits = pool_limits(overrides)
    except ValueError as err:
        print(f"amr-dagster pools: {err}", file=sys.stderr)
        return 2
    import dagster as dg

    instance = dg.DagsterInstance.get()
    for name, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(name, limit)
        print(f"pool {name:<15} limit {limit}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from amr_dagster.generation.config import GenerationConfig  # a dataclass, cheap to import

    parser = argparse.ArgumentParser(prog="amr-dagster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="register a seed batch and materialize it through Dagster")
    run.add_argument("--seeds", help="a seed file or folder (.py folder, .tar.gz/.zip, .jsonl/.parquet with `content`), local or s3://bucket/key; default: a standard-library batch")
    run.add_argument("--select", help="comma-separated assets to materialize (default: every stage)")
    run.add_argument("--stdlib-files", type=int, default=int(os.environ.get("AMR_STDLIB_FILES", DEFAULT_STDLIB_FILES)), help="files in the default standard-library batch (0 = all)")
    run.add_argument("--max-seeds", type=int, default=None, help=f"cap on deduplicated seeds entering generation (default: {DEFAULT_STDLIB_MAX_SEEDS} for the standard-library batch, none for --seeds; 0 = no cap)")
    run.add_argument("--profile", help="settings profile: embedded (default; small-model settings) or selfcodealign (the reference's settings); files under amr_dagster/prompts/profiles/")
    run.add_argument("--n-samples", type=int, default=None, help=f"responses sampled per instruction (default: the profile's, {GenerationConfig().n_samples} for embedded)")
    run.add_argument("--data-dir", help="data root: a folder or s3://bucket/prefix (default $AMR_DATA_DIR or ./.amr/data)")
    run.add_argument("--no-typecheck", action="store_true", help="skip the pyright filter")
    run.add_argument("--no-judge", action="store_true", help="skip the LLM docstring judge")
    run.add_argument("--benchmark", action="append", help="extra benchmark JSONL to decontaminate against (repeatable)")
    run.add_argument("--llm-backend", choices=["llama_cpp", "openai", "vllm", "cache_only", "none"], help="engine for both roles (default: vLLM in-process on the embedded model where vLLM is installed, else the embedded llama.cpp)")
    run.add_argument("--sandbox", choices=["auto", "docker", "local"], help="sandbox backend (default auto, or $AMR_SANDBOX_BACKEND)")
    run.add_argument("--set", action="append", metavar="OWNER.FIELD=VALUE",
                     help="any other setting, as resource or asset config: e.g. generation.response_max_tokens=160, "
                     "evolution.use_retrieval=false, deduped_seeds.threshold=0.8 (repeatable; values in YAML)")
    run.add_argument("--humaneval-limit", type=int, default=None, help="humaneval_eval: first N problems only (default all 164)")
    run.add_argument("--humaneval-samples", type=int, default=None, help="humaneval_eval: sampled completions per problem for pass@k (default 0: greedy pass@1 only)")
    run.add_argument("--submit", action="store_true", help="send the run to the instance's queue ($DAGSTER_HOME's run coordinator; the "
                     "daemon launches it, as for a UI launch) and follow it, instead of running in this process")
    run.add_argument("--workspace", help="with --submit: the workspace.yaml whose code location builds the run (default: the project's)")
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

    pools = sub.add_parser("pools", help="set the deployment's pool limits on the instance ($DAGSTER_HOME)")
    pools.add_argument("--set", action="append", metavar="POOL=LIMIT", help="a sized pool's limit (sandbox, llm_generator, llm_teacher; "
                       "default AMR_POOL_<NAME>, else 2, 4, 4); minhash_dedup and module_library are always 1")
    pools.set_defaults(func=cmd_pools)

    from amr_dagster.sandbox.verify import add_verify_arguments, run_verify

    verify = sub.add_parser("verify", help="run rows with `code` and `tests` in the sandbox; write them with verdicts")
    add_verify_arguments(verify)
    verify.set_defaults(func=run_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
