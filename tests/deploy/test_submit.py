"""``amr-dagster run --submit`` against the deployment: the run waits in the queue, the daemon
launches it (default run launcher), each stage's line is printed as its step ends, the run's
status is the exit code, its records are in PostgreSQL and its step logs in S3. Two runs whose
steps share a pool of 1 never overlap."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import dagster as dg
import polars as pl

from tests.dagster.test_pipeline_e2e import SEEDS  # three documented functions
from tests.deploy.conftest import daemon_log, wait_for

SEED_STAGES = ["seed_functions", "filtered_seeds", "deduped_seeds"]


def _submit(deployment, seeds: Path, data: Path, *extra: str):
    return deployment.cli("run", "--submit", "--seeds", str(seeds), "--data-dir", str(data), "--select", ",".join(SEED_STAGES),
                          "--no-typecheck", "--no-judge", "--llm-backend", "none", *extra)


def _step_spans(instance: dg.DagsterInstance, run_id: str, step: str) -> tuple[float, float]:
    records = instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}).records
    times = {r.event_log_entry.dagster_event.event_type: r.event_log_entry.timestamp for r in records if r.event_log_entry.step_key == step}
    return times[dg.DagsterEventType.STEP_START], times[dg.DagsterEventType.STEP_SUCCESS]


def test_submit_goes_through_the_queue_and_prints_each_stage(deployment, tmp_path):
    seeds = tmp_path / "tiny_math.py"
    seeds.write_text(SEEDS.lstrip("\n"))
    data = tmp_path / "data"
    proc = _submit(deployment, seeds, data)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr + daemon_log(deployment)
    assert "submitted to the instance's queue (QueuedRunCoordinator)" in out
    assert "[run queued]" in out and "[run success]" in out
    # each stage's line, in graph order, with its counts (3 documented functions, all kept)
    lines = [line for line in out.splitlines() if line.split()[:1] and line.split()[0] in SEED_STAGES]
    assert [line.split()[0] for line in lines] == SEED_STAGES
    assert lines[0].split()[1:4] == ["3", "3", "0"]

    instance = deployment.instance()
    run_id = re.search(r"run ([0-9a-f-]{36}) submitted", out).group(1)
    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert type(instance.run_storage).__name__ == "RetryingPostgresRunStorage"  # dagster-postgres's, retried
    assert run.asset_selection == {dg.AssetKey(s) for s in SEED_STAGES}
    key = run.tags["dagster/partition"]
    assert key in instance.get_dynamic_partitions("seed_batches")
    assert run.run_config["ops"]["filtered_seeds"]["config"] == {"typecheck": False, "docstring_judge": False}
    events = {r.event_log_entry.dagster_event.event_type for r in instance.get_records_for_run(run_id).records if r.event_log_entry.dagster_event}
    assert {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING, dg.DagsterEventType.RUN_SUCCESS} <= events
    frame = pl.read_parquet(data / "deduped_seeds" / f"{key}.parquet")
    assert sorted(frame["name"]) == ["add_numbers", "is_even", "reverse_words"]
    # the steps' stdout/stderr went to S3 (dagster-aws S3ComputeLogManager), not the worker's disk
    listed = deployment.s3.server.client().list_objects_v2(Bucket=deployment.env["AMR_COMPUTE_LOG_BUCKET"], Prefix="compute-logs/")
    assert any(run_id in obj["Key"] for obj in listed.get("Contents", [])), listed


def _blocked_on_pool(instance: dg.DagsterInstance, run_id: str, pool: str) -> bool:
    return any(
        f"blocked by limit for pool {pool}" in (r.event_log_entry.message or "")
        for r in instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.ENGINE_EVENT}).records
    )


def test_a_pool_of_one_holds_across_two_runs(deployment, tmp_path):
    """Two batches submitted at once. The ``minhash_dedup`` slot (limit 1) is held by this test
    until both runs are waiting for it at ``deduped_seeds`` (so the two runs really contend);
    once it is freed, their ``deduped_seeds`` steps run one after the other, never overlapping,
    and neither started before the slot was freed."""
    instance = deployment.instance()
    storage = instance.event_log_storage
    assert storage.get_concurrency_info("minhash_dedup").slot_count == 1  # set by `amr-dagster pools`
    holder = "pool-test-holder"
    assert storage.claim_concurrency_slot("minhash_dedup", holder, "hold").is_claimed
    before = {r.dagster_run.run_id for r in instance.get_run_records()}
    results = {}

    def submit(name: str) -> None:
        seeds = tmp_path / name / f"{name}.py"
        seeds.parent.mkdir()
        seeds.write_text(SEEDS.lstrip("\n").replace("add_numbers", f"add_{name}"))
        results[name] = _submit(deployment, seeds, tmp_path / "data")

    threads = [threading.Thread(target=submit, args=(name,)) for name in ("alpha", "beta")]
    for thread in threads:
        thread.start()
    try:
        def both_waiting():
            runs = [r.dagster_run.run_id for r in instance.get_run_records() if r.dagster_run.run_id not in before]
            return runs if len(runs) == 2 and all(_blocked_on_pool(instance, run_id, "minhash_dedup") for run_id in runs) else None

        run_ids = wait_for(both_waiting, 240, "both runs to wait for the minhash_dedup slot")
    finally:
        freed = time.time()
        storage.free_concurrency_slot_for_step(holder, "hold")
    for thread in threads:
        thread.join()
    for name, proc in results.items():
        assert proc.returncode == 0, name + proc.stdout + proc.stderr + daemon_log(deployment)

    (a_start, a_end), (b_start, b_end) = (_step_spans(instance, run_id, "deduped_seeds") for run_id in run_ids)
    assert min(a_start, b_start) >= freed
    assert a_end <= b_start or b_end <= a_start, ((a_start, a_end), (b_start, b_end))
