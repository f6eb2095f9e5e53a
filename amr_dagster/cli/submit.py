"""``amr-dagster run --submit``: the run goes through the instance's queue, like a UI launch.

Part of the CLI driver (it imports Dagster). ``submit`` loads the code location from
``workspace.yaml`` the way the webserver and the daemon do, builds the run exactly as the UI's
launch mutation does (the job subset for the selected assets, its execution plan, the partition
tag, the run config the CLI built), and hands it to ``instance.submit_run``: on a deployment the
QueuedRunCoordinator queues it and the daemon launches it under the instance's run, tag and pool
limits and run monitoring. ``follow`` then reads the run's event log until the run ends, calling
back as each step finishes, so the CLI prints a stage's line the moment it is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import dagster as dg

from resources.instance_storage import postgres_name, retried

T = TypeVar("T")
PARTITION_TAG = "dagster/partition"
PROJECT_WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"


@dataclass(frozen=True)
class StepEnd:
    """One finished step of a followed run: its asset name, whether it succeeded, and why not."""

    name: str
    ok: bool
    error: str = ""


def submit(
    instance: dg.DagsterInstance,
    job_name: str,
    assets: list[str],
    run_config: dict,
    partition_key: str | None = None,
    workspace: str | Path | None = None,
    tags: dict[str, str] | None = None,
) -> dg.DagsterRun:
    """Create the run from the code location of ``workspace`` (default: the project's
    ``workspace.yaml``) and submit it to the instance's run coordinator; returns the run."""
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    target = WorkspaceFileTarget(paths=[str(workspace or PROJECT_WORKSPACE)])
    # the code server's start/stop INFO lines would land between the CLI's own lines
    with WorkspaceProcessContext(instance, target, version=dg.__version__, code_server_log_level="WARNING") as process:
        context = process.create_request_context()
        (location_name,) = context.code_location_names  # the project is one code location
        error = context.get_code_location_error(location_name)
        if error:
            raise RuntimeError(f"code location {location_name!r} did not load: {error.message}")
        location = context.get_code_location(location_name)
        (repository,) = location.get_repositories().values()
        selector = JobSubsetSelector(
            location_name=location_name, repository_name=repository.name, job_name=job_name,
            op_selection=None, asset_selection=[dg.AssetKey.from_user_string(a) for a in assets],
        )
        remote_job = location.get_job(selector)
        plan = location.get_execution_plan(remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance)
        run_tags = {**remote_job.tags, **(tags or {})}
        if partition_key:
            run_tags[PARTITION_TAG] = partition_key
        run = instance.create_run(
            job_name=job_name, run_id=None, run_config=run_config,
            asset_selection=frozenset(selector.asset_selection or ()), asset_check_selection=None,
            op_selection=None, resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            status=DagsterRunStatus.NOT_STARTED, tags=run_tags, root_run_id=None, parent_run_id=None,
            job_snapshot=remote_job.job_snapshot, execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
            asset_graph=context.asset_graph,
        )
        return instance.submit_run(run.run_id, context)


_STEP_ENDS = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}


def follow(
    instance: dg.DagsterInstance,
    run_id: str,
    on_step: Callable[[StepEnd], None],
    on_status: Callable[[str], None] | None = None,
    poll_s: float = 0.5,
) -> dg.DagsterRun:
    """Read the run's event log until the run has finished, calling ``on_step`` for each step
    that succeeded or failed (in event order) and ``on_status`` when the run's status changes
    (QUEUED, STARTING, STARTED, ...). Returns the finished run."""
    cursor = None
    status = None
    patient = _Patient(instance)
    while True:
        run = patient(lambda: instance.get_run_by_id(run_id))
        if run is None:
            raise LookupError(f"run {run_id} is not in the instance")
        finished = run.is_finished  # read before the events: nothing after it is missed
        while True:
            page = patient(lambda: instance.get_records_for_run(run_id, cursor=cursor, of_type=_STEP_ENDS, limit=100))
            for record in page.records:
                event = record.event_log_entry.dagster_event
                name = event.step_key or ""
                error = ""
                if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data.error:
                    error = root_cause(event.step_failure_data.error)
                on_step(StepEnd(name, event.event_type == dg.DagsterEventType.STEP_SUCCESS, error))
            cursor = page.cursor
            if not page.has_more:
                break
        if run.status.value != status:  # after the steps it covers: "success" comes last
            status = run.status.value
            if on_status:
                on_status(status)
        if finished:
            return run
        time.sleep(poll_s)


class _Patient:
    """Calls to the instance's storage that wait out a database restart, for the same budget as
    the run's own storage calls (``AMR_PG_RETRY_BUDGET_S``, resources/instance_storage.py), then
    raise ``StorageUnavailable`` naming the storage (the run itself goes on, or fails, without us)."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def storage(self) -> str:
        url = getattr(self.instance.run_storage, "postgres_url", None)
        if not url:
            return f"the instance's storage ({type(self.instance.run_storage).__name__})"
        return f"{postgres_name(url)} (the instance's storage)"

    def __call__(self, call: Callable[[], T]) -> T:
        return retried(call, self.storage(), "follow the run")


def root_cause(error) -> str:
    """What the stage itself raised (e.g. a storage outage naming its service), under Dagster's
    "Error occurred while executing op ..." wrappers; its own causes are left out."""
    while getattr(error, "cause", None) is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    return error.message.strip()


def run_failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """The message of the run's failure event (a crashed worker, a storage outage), if any."""
    records = instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.RUN_FAILURE}).records
    return records[-1].event_log_entry.message if records else ""
