"""``kill -9`` of a run worker in the middle of an LLM stage (the embedded Gemma 3 270M through
llama.cpp, for real), then a rerun of the batch: no row lost, none duplicated, and every LLM call
that had finished before the kill is answered from the persistent cache, not made again."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess

import dagster as dg
import polars as pl
import pytest

from tests.deploy.conftest import BIN, ROOT, daemon_log, wait_for

SEEDS = "\n\n".join(
    f'def scale_{i}(values: list[int], factor: int) -> list[int]:\n    """Return each value of the list multiplied by {i} times factor."""\n    return [v * {i} * factor for v in values]\n'
    for i in range(1, 7)
)
STAGES = "seed_functions,filtered_seeds,deduped_seeds,seed_concepts"


def _cache_rows(path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        try:
            return conn.execute("select count(*) from completions").fetchone()[0]
        except sqlite3.OperationalError:  # table not created yet
            return 0


def _events(instance, run_id, kind):
    return instance.get_records_for_run(run_id, of_type={kind}).records


@pytest.mark.llm
def test_kill_9_of_a_run_worker_mid_stage_then_a_rerun(deployment, tmp_path):
    seeds = tmp_path / "scales.py"
    seeds.write_text(SEEDS)
    data = tmp_path / "data"
    cache = data / "llm_cache.sqlite"
    argv = [str(BIN / "amr-dagster"), "run", "--submit", "--seeds", str(seeds), "--data-dir", str(data), "--select", STAGES,
            "--no-typecheck", "--no-judge", "--llm-backend", "llama_cpp", "--set", "generation.concepts_max_tokens=48"]
    instance = deployment.instance()
    before = {r.dagster_run.run_id for r in instance.get_run_records()}
    follower = subprocess.Popen(argv, cwd=ROOT, env=deployment.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def in_seed_concepts():
            for record in instance.get_run_records():
                run_id = record.dagster_run.run_id
                started = [r for r in _events(instance, run_id, dg.DagsterEventType.STEP_START) if r.event_log_entry.step_key == "seed_concepts"]
                if run_id not in before and started and _cache_rows(cache) >= 1:
                    return run_id
            return None

        run_id = wait_for(in_seed_concepts, 400, "the first finished LLM call of seed_concepts", poll=0.2)
        (pid,) = {int(m.group(1)) for r in _events(instance, run_id, dg.DagsterEventType.ENGINE_EVENT)
                  if (m := re.search(r"Started process for run \(pid: (\d+)\)", r.event_log_entry.message or ""))}
        os.kill(pid, signal.SIGKILL)
        finished_before = _cache_rows(cache)  # committed one by one: what the kill cannot take back
    finally:
        follower.kill()  # the run stays STARTED (the default launcher cannot see its worker die)
        follower.communicate()
    succeeded = {r.event_log_entry.step_key for r in _events(instance, run_id, dg.DagsterEventType.STEP_SUCCESS)}
    assert "seed_concepts" not in succeeded, "killed after the stage ended: not mid-stage"
    key = instance.get_run_by_id(run_id).tags["dagster/partition"]
    deduped = pl.read_parquet(data / "deduped_seeds" / f"{key}.parquet")
    total = deduped.filter(pl.col("status") == "accepted").height
    assert 1 <= finished_before < total

    # What the UI's Terminate does for a run whose worker is gone; the queue's one-run-per-batch
    # limit would hold the rerun back otherwise.
    instance.report_run_canceled(instance.get_run_by_id(run_id), "run worker killed (kill -9)")
    rerun = subprocess.run(argv, cwd=ROOT, env=deployment.env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr + daemon_log(deployment)
    rerun_id = re.search(r"run ([0-9a-f-]{36}) submitted", rerun.stdout).group(1)

    concepts = pl.read_parquet(data / "seed_concepts" / f"{key}.parquet")
    assert concepts.height == total and concepts["id"].n_unique() == total  # none lost, none twice
    assert set(concepts["parent_id"]) == set(deduped.filter(pl.col("status") == "accepted")["id"])
    (materialization,) = [m for m in instance.get_records_for_run(rerun_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION}).records
                          if m.event_log_entry.dagster_event.asset_key == dg.AssetKey("seed_concepts")]
    meta = {k: v.value for k, v in materialization.event_log_entry.dagster_event.materialization.metadata.items()}
    assert meta["llm/cache_hits"] >= finished_before  # every call finished before the kill: from the cache
    assert _cache_rows(cache) == meta["llm/cache_hits"] + meta["llm/cache_misses"]  # each call made once
