"""Global assets at scale: does one batch cost the same after 15 batches as after none?

``python -m bench.scale [--batches 16] [--seeds 4] [--repeat 2] [--no-old] [--keep DIR]``
(a kept DIR's pipeline outputs are reused by the next run with the same seeds)

Data: ``--batches`` seed batches of ``--seeds`` real standard-library functions each
(``bench.corpus``) are materialized one after another through Dagster, each a run of the whole
``amr_pipeline`` job for its partition (``execute_in_process`` on a persistent SQLite instance,
the local bubblewrap sandbox, one sample per instruction), on a local data root. LLM calls: the
``cache_only`` backend's engine is the replay engine the tests use
(``llm.replay.RecordedOutputsEngine``: each prompt answered with a real recorded Gemma 3 270M
output of the same step, then cached), so no model runs and parsing, sandbox verdicts and
library candidates are those of real model text. That run's own global-asset times are printed.

The replayed responses (real Gemma 3 270M text) never pass their own tests, so the pipeline
yields no verified pair; to give the export real work, each batch's ``verified_pairs`` then gets
one accepted pair per deduplicated seed (``add_seed_pairs``: the docstring as the instruction,
the real standard-library function as the response), which the export decontaminates and
deduplicates against every earlier batch (same-named helpers are rejected as repeats).

Measured: the two global assets alone, ``module_library`` and ``instruction_dataset``, by the
``wall_s`` each materialization reports (the core call plus metadata, as the UI shows it), as
the batches arrive one after another on a fresh data root, local and S3 (a real SeaweedFS on
loopback, ``tests/s3_fixtures.py``): for each batch in turn its partition files (every stage)
are copied in and the global assets are materialized through Dagster. Reported per storage:
the global assets' time for the last four batches to arrive over the first four.

Batches differ in content (one of these seed batches yields 1 pair and a few library
candidates, another 7 pairs and a dozen), so "the first four" and "the last four" would
compare different work as well as different positions. The arrival sequences therefore
alternate direction (``--repeat`` 4: forward, reversed, forward, reversed): each batch
arrives once among the first four and once among the last four, so content cancels and what
is left is the cost of arriving late. Per direction and position the best of that direction's
sequences is taken; the ratio sums both directions. The forward-only ratio is printed too.

The old behaviour (default on; ``--no-old`` skips it): the global assets of commit 23923c0,
which rebuilt the library and re-exported every batch on each run, in a worker process with
its own data root (``git archive 23923c0`` of this repository), fed the same batches and
materialized right after the project's global assets for each batch (interleaved, so both see
the same machine load). Both worker processes warm up first (embedding model, benchmark index)
and run torch on one thread (``ONE_THREAD``). Also printed: the same ratios from each worker's
CPU seconds, which a loaded machine disturbs less than wall time.

Last line exactly: ``scale: batch 13-16 cost <r>x batch 1-4 (local), <s>x (s3)`` (goal <= 1.3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OLD_COMMIT = "23923c0"
GLOBALS = ("module_library", "instruction_dataset")
QUIET_INSTANCE = "telemetry:\n  enabled: false\n"
# The embedding model in each global-asset worker on one thread: on a shared, loaded machine
# torch's spinning worker threads made embedding a few modules take seconds and vary 10x.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# Materializes the global assets on the data root named by each input line, prints their wall_s
# as one JSON line. Run with PYTHONPATH = an archive of the old commit (or this checkout).
GLOBAL_WORKER = r'''
import json, sys, time
import dagster as dg
from assets import GLOBAL_ASSETS
from resources import default_resources
from resources.data_root import DataRoot

instance = dg.DagsterInstance.ephemeral()
for line in sys.stdin:
    root = line.strip()
    cpu = time.process_time()
    result = dg.materialize(GLOBAL_ASSETS, resources={**default_resources(), "data_root": DataRoot(path=root)}, instance=instance)
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    walls = {"failed_checks": failed, "process_cpu_s": time.process_time() - cpu}
    for name in ("module_library", "instruction_dataset"):
        meta = result.asset_materializations_for_node(name)[0].metadata
        walls[name] = meta["wall_s"].value
    meta = result.asset_materializations_for_node("instruction_dataset")[0].metadata
    walls["pairs"] = [meta["verified_pairs_in"].value, meta["exported_pairs"].value]
    print(json.dumps(walls), flush=True)
'''


def seed_batches(n_batches: int, per_batch: int, folder: Path) -> list[Path]:
    """``n_batches`` JSONL seed files of ``per_batch`` distinct real functions each."""
    from bench.corpus import real_functions

    corpus = real_functions(max(400, 20 * n_batches * per_batch))
    by_path = {f"{r['source_path']}:{r['line_start']}": r for r in corpus if 200 < len(r["code"]) < 1200}
    rows = list(by_path.items())[: n_batches * per_batch]
    if len(rows) < n_batches * per_batch:
        raise SystemExit(f"only {len(rows)} seed functions available")
    files = []
    folder.mkdir(parents=True, exist_ok=True)
    for b in range(n_batches):
        path = folder / f"scale-{b + 1:02d}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for where, row in rows[b * per_batch:(b + 1) * per_batch]:
                out.write(json.dumps({"path": where, "content": row["code"]}, ensure_ascii=False) + "\n")
        files.append(path)
    return files


def install_replay(model_id: str) -> None:
    """Make the ``cache_only`` backend answer misses with recorded real outputs (then cached)."""
    from amr_dagster.llm import registry
    from amr_dagster.llm.replay import RecordedOutputsEngine
    from resources.llm import LLMResource

    recorder = RecordedOutputsEngine(model_id)
    for role in ("generator", "teacher"):
        registry._engines[LLMResource(role=role, backend="cache_only", model=model_id).spec().identity()] = recorder


class GlobalWorker:
    """A process that materializes the global assets of the code at ``code`` on request."""

    def __init__(self, code: Path, env: dict[str, str], log: Path) -> None:
        script = log.parent / f"global_worker_{code.name}.py"
        script.write_text(GLOBAL_WORKER)
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**env, "PYTHONPATH": str(code), **ONE_THREAD}, cwd=str(code),
        )

    def materialize(self, root: str) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(root + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the global-asset worker exited (log: {self.log.name})")
        walls = json.loads(line)
        if walls.pop("failed_checks"):
            raise RuntimeError(f"global asset checks failed on {root}")
        return walls

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self.log.close()


def old_code(work: Path) -> Path | None:
    """An archive of the old commit (None when git cannot produce it)."""
    target = work / f"old-{OLD_COMMIT}"
    if target.exists():
        return target
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"old code unavailable ({exc}); skipping the old figures", file=sys.stderr)
        return None
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def add_seed_pairs(root: str, key: str) -> int:
    """Append to a batch's ``verified_pairs`` one accepted pair per deduplicated seed (its
    docstring as the instruction, the function as the response): the replayed Gemma responses
    never pass their tests, and an export with no pairs would leave its dedup idle."""
    import polars as pl

    from amr_dagster.ids import row_id
    from amr_dagster.outcomes import accepted, with_status
    from amr_dagster.storage.frames import FrameStore

    frames = FrameStore(root)
    seeds = accepted(frames.read("deduped_seeds", key))
    real = frames.read("verified_pairs", key)
    rows = [{
        "id": row_id(s["id"], "bench-pair"), "parent_id": s["id"], "instruction_id": row_id(s["id"], "bench-instruction"),
        "instruction": f"Write a Python function `{s['name']}`: {s['docstring']}", "response": f"```python\n{s['code']}\n```",
        "code": s["code"], "tests": f"assert callable({s['name']})", "origin": "direct", "batch": key, "seed_id": s["id"],
        "seed_name": s["name"], "seed_source_path": s["source_path"], "seed_line_start": s["line_start"], "seed_line_end": s["line_end"],
        "seed_repo": s["repo"], "seed_license": s["license"],
    } for s in seeds.iter_rows(named=True)]
    made = with_status(pl.DataFrame(rows, schema={c: t for c, t in real.schema.items() if c not in ("status", "reject_reason")}), [None] * len(rows))
    frames.write("verified_pairs", key, pl.concat([real, made.select(real.columns)], how="vertical"))
    return len(rows)


def copy_batch(source: str, target: str, key: str) -> None:
    """Every stage's partition file of one batch from one data root to another."""
    from amr_dagster.schemas import PARTITIONED_STAGES
    from amr_dagster.storage.frames import FrameStore
    from amr_dagster.storage.objectstore import open_store

    src, dst = open_store(source), open_store(target)
    for stage in PARTITIONED_STAGES:
        data = src.get(FrameStore.key(stage, key))
        if data is not None:
            dst.put(FrameStore.key(stage, key), data)


def pipeline_run(job, seeds: list[Path], root: str, work: Path, model_id: str) -> list[str]:
    """The whole job for each seed batch, one after another; returns the partition keys."""
    import dagster as dg

    from amr_dagster.storage.layout import DataLayout
    from assets.partitions import seed_batches as partitions

    (work / "dagster").mkdir(parents=True, exist_ok=True)
    (work / "dagster" / "dagster.yaml").write_text(QUIET_INSTANCE)
    instance = dg.DagsterInstance.local_temp(tempdir=str(work / "dagster"))
    layout = DataLayout(root)
    llm = {"backend": "cache_only", "model": model_id, "cache_path": str(work / "llm_cache.sqlite")}
    config = {
        "resources": {
            "data_root": {"config": {"path": root}},
            "generator": {"config": llm},
            "teacher": {"config": llm},
            "sandbox": {"config": {"backend": "local"}},
            "generation": {"config": {"n_samples": 1}},
        },
        "ops": {"filtered_seeds": {"config": {"typecheck": False, "docstring_judge": False}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    keys = []
    for i, path in enumerate(seeds):
        key = layout.batches().register(path).key
        instance.add_dynamic_partitions(partitions.name, [key])
        started = time.perf_counter()
        result = job.execute_in_process(partition_key=key, instance=instance, run_config=config, raise_on_error=True)
        failed = [(c.asset_key.to_user_string(), c.check_name) for c in result.get_asset_check_evaluations() if not c.passed]
        if failed:
            raise RuntimeError(f"batch {i + 1}: checks failed: {failed}")
        walls = {n: result.asset_materializations_for_node(n)[0].metadata["wall_s"].value for n in GLOBALS}
        meta = result.asset_materializations_for_node("instruction_dataset")[0].metadata
        print(f"  batch {i + 1:>2} ({time.perf_counter() - started:.0f}s): global assets in the run: library {walls['module_library']:.3f}s, "
              f"export {walls['instruction_dataset']:.3f}s; verified pairs so far {meta['verified_pairs_in'].value}, "
              f"exported {meta['exported_pairs'].value}", file=sys.stderr, flush=True)
        keys.append(key)
    return keys


def arrival_sequence(keys: list[str], source: str, roots: dict[str, str], workers: dict[str, GlobalWorker]) -> dict[str, list[dict[str, Any]]]:
    """For each batch in turn (``keys`` in arrival order): copy it into each code's data root,
    materialize its global assets. Lines are numbered by arrival position."""
    out: dict[str, list[dict[str, Any]]] = {code: [] for code in workers}
    for i, key in enumerate(keys):
        line = f"  batch {i + 1:>2}:"
        for code, worker in workers.items():
            copy_batch(source, roots[code], key)
            walls = worker.materialize(roots[code])
            out[code].append(walls)
            line += f"  {code}: library {walls['module_library']:.3f}s export {walls['instruction_dataset']:.3f}s"
        print(line + f"  (pairs in {walls['pairs'][0]}, exported {walls['pairs'][1]})", file=sys.stderr, flush=True)
    return out


def cost(walls: dict[str, Any]) -> float:
    return walls["module_library"] + walls["instruction_dataset"]


def position_best(runs: list[dict[str, list[dict[str, Any]]]], code: str, metric) -> list[float]:
    """Per arrival position, the smallest ``metric`` over sequences that ran in the same order."""
    return [min(metric(run[code][i]) for run in runs) for i in range(len(runs[0][code]))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=4, help="seed functions per batch")
    parser.add_argument("--repeat", type=int, default=4, help="arrival sequences per storage, alternately forward and reversed")
    parser.add_argument("--no-old", action="store_true", help="skip the old commit's figures")
    parser.add_argument("--storage", default="local,s3")
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.batches < 8:
        raise SystemExit("--batches must be at least 8 (first four vs last four)")
    if args.repeat < 2:
        raise SystemExit("--repeat must be at least 2 (one forward and one reversed sequence)")

    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="amr-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in [n for n in os.environ if n.startswith("AMR_")]:
        os.environ.pop(name)
    os.environ["DAGSTER_HOME"] = str(work / "dagster-home")
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").write_text(QUIET_INSTANCE)
    os.environ["AMR_CACHE_DIR"] = str(work / "machine_cache")  # shared-state copies, keyed by root

    from amr_dagster.definitions import defs
    from bench.pipeline import MODEL_ID
    from sensors.seed_sensor import PIPELINE_JOB
    from tests.s3_fixtures import seaweedfs

    install_replay(MODEL_ID)
    seeds = seed_batches(args.batches, args.seeds, work / "seeds")
    source = str(work / "source" / "data")
    print(f"pipeline: {args.batches} batches of {args.seeds} seeds through amr_pipeline -> {source}", file=sys.stderr, flush=True)
    done = work / "source" / "keys.json"  # a kept work folder's pipeline data is reused (the slow part)
    info = json.loads(done.read_text()) if done.is_file() else {}
    if info.get("seeds") == [p.read_text() for p in seeds]:
        keys = info["keys"]
        print(f"  reusing the pipeline's outputs of {len(keys)} batches under {source}", file=sys.stderr, flush=True)
    else:
        keys = pipeline_run(defs.resolve_job_def(PIPELINE_JOB), seeds, source, work / "source", MODEL_ID)
        info = {"keys": keys, "seeds": [p.read_text() for p in seeds]}
        done.write_text(json.dumps(info))
    if "seed_pairs" not in info:
        info["seed_pairs"] = sum(add_seed_pairs(source, key) for key in keys)
        done.write_text(json.dumps(info))
    print(f"  verified_pairs: {info['seed_pairs']} pairs made from the batches' seeds (add_seed_pairs)", file=sys.stderr, flush=True)

    codes = {"new": ROOT}
    old = None if args.no_old else old_code(work)
    if old is not None:
        codes["old"] = old
    storages = [s.strip() for s in args.storage.split(",") if s.strip()]
    runs: dict[str, list[dict[str, list]]] = {s: [] for s in storages}
    (work / "seaweedfs").mkdir(exist_ok=True)
    with seaweedfs(work / "seaweedfs") if "s3" in storages else _nothing() as server:
        if server is not None:
            os.environ.update(server.env())
        workers = {code: GlobalWorker(path, dict(os.environ), work / f"worker-{code}.log") for code, path in codes.items()}
        try:
            for code, worker in workers.items():  # warm-up: embedding model, benchmark index, imports
                warm = str(work / "warm" / code)
                shutil.rmtree(warm, ignore_errors=True)
                copy_batch(source, warm, keys[0])
                worker.materialize(warm)
            for r in range(args.repeat):
                for storage in storages:
                    if storage == "s3":
                        bucket = server.new_bucket()
                        roots = {code: f"s3://{bucket}/{code}" for code in codes}
                    else:  # a fresh data root per sequence (a kept work folder may hold an earlier run's)
                        shutil.rmtree(work / f"{storage}-{r + 1}", ignore_errors=True)
                        roots = {code: str(work / f"{storage}-{r + 1}" / code) for code in codes}
                    order = keys if r % 2 == 0 else keys[::-1]
                    print(f"{storage}, sequence {r + 1} ({'forward' if r % 2 == 0 else 'reversed'}): global assets as the batches "
                          f"arrive ({', '.join(roots.values())})", file=sys.stderr, flush=True)
                    runs[storage].append(arrival_sequence(order, source, roots, workers))
        finally:
            for worker in workers.values():
                worker.close()

    print(f"\nglobal assets (module_library + instruction_dataset) as {args.batches} batches of {args.seeds} seeds arrive; "
          f"per arrival position the best of each direction's sequences, forward + reversed summed:")
    print(f"{'storage':<8}{'code':<6}{'first 4 s':>10}{'last 4 s':>10}{'ratio':>8}{'forward only':>14}   per position, forward | reversed (s)")
    ratios: dict[tuple[str, str], float] = {}
    for metric, label in ((cost, None), (lambda w: w["process_cpu_s"], "process CPU seconds")):
        if label:
            print(f"the same with this process's {label} for the whole global materialization (less sensitive to machine load):")
        for storage in storages:
            for code in codes:
                forward, reverse = (position_best(runs[storage][d::2], code, metric) for d in (0, 1))
                first, last = sum(forward[:4]) + sum(reverse[:4]), sum(forward[-4:]) + sum(reverse[-4:])
                ratio = last / first if first else float("inf")
                forward_only = sum(forward[-4:]) / sum(forward[:4]) if sum(forward[:4]) else float("inf")
                if label is None:
                    ratios[(storage, code)] = ratio
                print(f"{storage:<8}{code:<6}{first:>10.3f}{last:>10.3f}{ratio:>7.2f}x{forward_only:>13.2f}x   "
                      f"{' '.join(f'{b:.2f}' for b in forward)} | {' '.join(f'{b:.2f}' for b in reverse)}")
    pairs = runs[storages[0]][0]["new"][-1]["pairs"]
    print(f"after {len(keys)} batches: {pairs[0]} verified pairs in, {pairs[1]} exported")
    new = {s: ratios[(s, "new")] for s in storages}
    print("goal: both <= 1.3: " + ("met" if all(r <= 1.3 for r in new.values()) else "MISSED"))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"scale: batch {args.batches - 3}-{args.batches} cost {new.get('local', float('nan')):.2f}x batch 1-4 (local), "
          f"{new.get('s3', float('nan')):.2f}x (s3)")
    return 0


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
