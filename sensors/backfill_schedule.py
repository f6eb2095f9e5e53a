"""The backfill schedule: every tick, find seed batches whose assets are missing or stale
(materialized by an older code/prompt version) and request runs for a bounded number of them.

Dagster's ``build_schedule_from_partitioned_job`` rejects purely dynamic partitions, so the
schedule reads the keys from the instance itself. Batches already queued or running are
skipped, so a slow run is never requested twice.
"""


import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import dagster as dg

from assets.partitions import seed_batches
from sensors.seed_sensor import PIPELINE_JOB

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dataclass(frozen=True)
class BackfillItem:
    partition: str
    reason: str  # "missing: <asset>" or "stale: <asset> <old> -> <new>"


def plan_backfill(
    partitions: Sequence[str],
    current_versions: Mapping[str, str],
    materialized_versions: Mapping[tuple[str, str], str | None],
    in_flight: set[str],
    limit: int,
) -> list[BackfillItem]:
    """Which partitions need a run, oldest first, at most ``limit``.

    ``materialized_versions[(asset, partition)]`` is the code version of the latest
    materialization, or absent when the partition was never materialized.
    """
    plan: list[BackfillItem] = []
    for partition in partitions:
        if partition in in_flight:
            continue
        reason = None
        for asset, version in current_versions.items():
            key = (asset, partition)
            if key not in materialized_versions:
                reason = f"missing: {asset}"
                break
            old = materialized_versions[key]
            if old != version:
                reason = f"stale: {asset} {old} -> {version}"
                break
        if reason:
            plan.append(BackfillItem(partition, reason))
            if len(plan) >= limit:
                break
    return plan


def _latest_code_version(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str) -> tuple[bool, str | None]:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=1).records
    if not records:
        return False, None
    materialization = records[0].asset_materialization
    tags = (materialization.tags or {}) if materialization else {}
    return True, tags.get("dagster/code_version")


def current_code_versions() -> dict[str, str]:
    """Code version of every partitioned asset of the pipeline, by asset name."""
    from assets import PARTITIONED_ASSETS

    versions: dict[str, str] = {}
    for assets_def in PARTITIONED_ASSETS:
        for key, version in assets_def.code_versions_by_key.items():
            if version:
                versions[key.to_user_string()] = version
    return versions


def backfill_requests(context: dg.ScheduleEvaluationContext, limit: int) -> list[dg.RunRequest] | dg.SkipReason:
    instance = context.instance
    partitions = list(instance.get_dynamic_partitions(seed_batches.name))
    current = current_code_versions()
    in_flight = {
        r.dagster_run.tags.get("dagster/partition")
        for r in instance.get_run_records(dg.RunsFilter(job_name=PIPELINE_JOB, statuses=IN_FLIGHT))
    }
    materialized: dict[tuple[str, str], str | None] = {}
    for partition in partitions:
        if partition in in_flight:
            continue
        for asset in current:
            found, version = _latest_code_version(instance, dg.AssetKey.from_user_string(asset), partition)
            if found:
                materialized[(asset, partition)] = version
    plan = plan_backfill(partitions, current, materialized, {p for p in in_flight if p}, limit)
    if not plan:
        return dg.SkipReason(f"all {len(partitions)} seed batches are materialized and current")
    try:
        stamp = context.scheduled_execution_time.isoformat()
    except Exception:  # evaluated outside a tick (tests, the UI's "test schedule" button)
        stamp = "manual"
    return [
        dg.RunRequest(run_key=f"backfill:{item.partition}:{stamp}", partition_key=item.partition, tags={"amr/backfill_reason": item.reason})
        for item in plan
    ]


def max_runs_per_tick() -> int:
    """Bound per tick, from the environment so operators tune it without a code change."""
    return int(os.environ.get("AMR_BACKFILL_MAX_RUNS", "4"))


@dg.schedule(job_name=PIPELINE_JOB, cron_schedule="0 * * * *", default_status=dg.DefaultScheduleStatus.STOPPED)
def backfill_schedule(context: dg.ScheduleEvaluationContext):
    """Hourly: runs for missing or stale seed batches, at most AMR_BACKFILL_MAX_RUNS (4) per tick."""
    return backfill_requests(context, max_runs_per_tick())
