"""Faults on the deployment. The S3 endpoint of the data root crashes (SIGKILL) during a
submitted run. Down for less than the retry budget (restarted at once; it takes ~17 s to come
back): the run completes. Down for longer: the run fails with an error naming the S3 endpoint,
and a rerun once it is back completes, with no lost and no duplicate row."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Callable

import dagster as dg
import polars as pl

from amr_dagster.cli.submit import root_cause
from amr_dagster.storage.frames import FrameStore
from amr_dagster.storage.objectstore import open_store
from tests.deploy.conftest import BIN, ROOT, S3_RETRY_BUDGET_S, daemon_log, wait_for
from tests.deploy.test_submit import SEED_STAGES, SEEDS


def _start_submit(deployment, seeds, data: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "amr-dagster"), "run", "--submit", "--seeds", str(seeds), "--data-dir", data, "--select", ",".join(SEED_STAGES),
         "--no-typecheck", "--no-judge", "--llm-backend", "none"],
        cwd=ROOT, env=deployment.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _new_run_started(instance: dg.DagsterInstance, before: set[str]):
    """The run created after ``before``, once its first step has started."""
    for record in instance.get_run_records():
        run_id = record.dagster_run.run_id
        if run_id not in before and instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.STEP_START}).records:
            return run_id
    return None


def _frames(deployment, data: str, key: str) -> dict[str, pl.DataFrame]:
    with_env = dict(deployment.env)
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, with_env):
        store = FrameStore(open_store(data))
        return {stage: store.read(stage, key) for stage in SEED_STAGES}


def _seeds(tmp_path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(SEEDS.lstrip("\n").replace("add_numbers", f"add_{name}"))
    return path


def run_through_outage(deployment, seeds, data: str, outage: Callable[[], None]) -> tuple[dg.DagsterRun, float]:
    """Submit a run of ``seeds``; once its first step has started, ``outage()`` (stops a
    service and starts it again). Returns the run, which must have succeeded and gone on after
    the outage, and how long the outage lasted."""
    instance = deployment.instance()
    before = {r.dagster_run.run_id for r in instance.get_run_records()}
    proc = _start_submit(deployment, seeds, data)
    run_id = wait_for(lambda: _new_run_started(instance, before), 240, "the run's first step")
    down = time.time()
    outage()
    up = time.time()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + daemon_log(deployment)
    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    ends = [r.event_log_entry.timestamp for r in instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.STEP_SUCCESS}).records]
    assert max(ends) > up, "the run ended before the outage: it proves nothing"
    return run, up - down


def test_s3_down_shorter_than_the_retry_budget_the_run_completes(deployment, tmp_path):
    data = f"s3://{deployment.s3.server.new_bucket()}/data"

    def crash_and_restart():
        deployment.s3.stop()
        deployment.s3.start()  # back after ~17 s, inside the 45 s budget

    run, outage_s = run_through_outage(deployment, _seeds(tmp_path, "brief"), data, crash_and_restart)
    assert outage_s < S3_RETRY_BUDGET_S
    frames = _frames(deployment, data, run.tags["dagster/partition"])
    assert sorted(frames["deduped_seeds"]["name"]) == ["add_brief", "is_even", "reverse_words"]


def test_s3_down_longer_than_the_budget_fails_naming_it_then_a_rerun_completes(deployment, tmp_path):
    instance = deployment.instance()
    data = f"s3://{deployment.s3.server.new_bucket()}/data"
    seeds = _seeds(tmp_path, "long")
    before = {r.dagster_run.run_id for r in instance.get_run_records()}
    proc = _start_submit(deployment, seeds, data)
    run_id = wait_for(lambda: _new_run_started(instance, before), 240, "the run's first step")
    deployment.s3.stop()
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        deployment.s3.start()
    assert proc.returncode == 1, out
    endpoint = deployment.s3.server.endpoint
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert f"S3 at {endpoint}" in out and "unreachable" in out, out
    failures = instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.STEP_FAILURE}).records
    assert any(f"S3 at {endpoint}" in root_cause(r.event_log_entry.dagster_event.step_failure_data.error) for r in failures)

    again = _start_submit(deployment, seeds, data)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out + daemon_log(deployment)
    key = instance.get_run_by_id(run_id).tags["dagster/partition"]
    frames = _frames(deployment, data, key)
    for stage, frame in frames.items():
        assert frame["id"].n_unique() == frame.height, stage  # no duplicate row
    assert frames["seed_functions"].height == 3 and frames["deduped_seeds"].height == 3  # no lost row
    assert sorted(frames["deduped_seeds"]["name"]) == ["add_long", "is_even", "reverse_words"]

