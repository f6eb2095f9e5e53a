"""Faults on the deployment: its PostgreSQL (runs, event log, pool slots, the daemon's queue) is
stopped (``pg_ctl stop -m fast``: every session ended, statements cut off) while a submitted run
is in its first stage. Down for less than the retry budget (15 s, past dagster-postgres's own
~11 s connect retry, which failed the step before resources/instance_storage.py): the run
completes. Down for longer: the run fails with an error naming PostgreSQL and its address, in
the CLI's output and, once PostgreSQL is back, in the run's own failure record; a rerun then
completes with no lost and no duplicate row. The daemon rides out both outages (it launches the
runs that follow)."""

from __future__ import annotations

import time

import dagster as dg

from amr_dagster.cli.submit import root_cause
from tests.deploy.conftest import PG_RETRY_BUDGET_S, daemon_log, wait_for
from tests.deploy.test_faults import _frames, _new_run_started, _seeds, _start_submit, run_through_outage

SHORT_OUTAGE_S = 15


def _no_row_lost_or_twice(frames, name: str) -> None:
    for stage, frame in frames.items():
        assert frame["id"].n_unique() == frame.height, stage  # no duplicate row
    assert frames["seed_functions"].height == 3 and frames["deduped_seeds"].height == 3  # no lost row
    assert sorted(frames["deduped_seeds"]["name"]) == [f"add_{name}", "is_even", "reverse_words"]


def _failure_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """What the run's records say went wrong: each failed step's own error, the run's failure."""
    messages = []
    for record in instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}).records:
        event = record.event_log_entry.get_dagster_event()
        data = event.step_failure_data if event.event_type == dg.DagsterEventType.STEP_FAILURE else event.job_failure_data
        messages.append(root_cause(data.error) if data and data.error else record.event_log_entry.message or "")
    return messages


def test_pg_down_shorter_than_the_retry_budget_the_run_completes(deployment, tmp_path):
    data = str(tmp_path / "data")

    def stop_and_start():
        deployment.postgres.stop("fast")
        time.sleep(SHORT_OUTAGE_S)
        deployment.postgres.start()

    run, outage_s = run_through_outage(deployment, _seeds(tmp_path, "pgbrief"), data, stop_and_start)
    assert SHORT_OUTAGE_S <= outage_s < PG_RETRY_BUDGET_S
    _no_row_lost_or_twice(_frames(deployment, data, run.tags["dagster/partition"]), "pgbrief")


def test_pg_down_longer_than_the_budget_fails_naming_it_then_a_rerun_completes(deployment, tmp_path):
    instance = deployment.instance()
    data = str(tmp_path / "data")
    seeds = _seeds(tmp_path, "pglong")
    before = {r.dagster_run.run_id for r in instance.get_run_records()}
    proc = _start_submit(deployment, seeds, data)
    run_id = wait_for(lambda: _new_run_started(instance, before), 240, "the run's first step")
    down = time.monotonic()
    deployment.postgres.stop("fast")
    try:
        out, _ = proc.communicate(timeout=300)  # the CLI gives up after the budget, naming PostgreSQL
        time.sleep(10)  # the run worker's own call gives up within seconds of the CLI's
    finally:
        deployment.postgres.start()
    assert time.monotonic() - down > PG_RETRY_BUDGET_S
    postgres = f"PostgreSQL at 127.0.0.1:{deployment.postgres.port}/{deployment.postgres.db_name}"
    assert proc.returncode == 1, out
    assert f"{postgres} (the instance's storage) unreachable" in out and "AMR_PG_RETRY_BUDGET_S" in out, out

    # Once PostgreSQL is back the run worker records the failure it had to keep to itself.
    wait_for(lambda: instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE, 120, "the run's failure record")
    messages = _failure_messages(instance, run_id)
    assert any(f"{postgres} unreachable for" in m for m in messages), messages

    again = _start_submit(deployment, seeds, data)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out + daemon_log(deployment)
    _no_row_lost_or_twice(_frames(deployment, data, instance.get_run_by_id(run_id).tags["dagster/partition"]), "pglong")
    assert deployment.daemon.poll() is None, "the daemon did not survive the outages" + daemon_log(deployment)
