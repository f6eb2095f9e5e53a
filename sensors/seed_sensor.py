"""The seed-arrival sensor: a new or changed file in the seeds location becomes a partition
and a run; an unchanged one does nothing. The cursor remembers each entry's change stamp and
key, so content is hashed only when an entry changes and a tick is idempotent."""


import json

import dagster as dg

from assets.partitions import seed_batches
from resources.data_root import DataRoot
from resources.seed_location import SeedLocation

PIPELINE_JOB = "amr_pipeline"


@dg.sensor(job_name=PIPELINE_JOB, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def seed_file_sensor(context: dg.SensorEvaluationContext, seed_location: SeedLocation, data_root: DataRoot):
    seen: dict[str, list[str]] = json.loads(context.cursor) if context.cursor else {}
    registry = data_root.batches()
    new_keys: list[str] = []
    requests: list[dg.RunRequest] = []
    current: dict[str, list[str]] = {}
    for entry in seed_location.entries():
        previous = seen.get(entry.name)
        if previous and previous[0] == entry.stamp:
            current[entry.name] = previous
            continue
        try:
            batch = registry.register(entry.path)
        except (OSError, ValueError) as exc:
            context.log.warning(f"seed entry {entry.name} not registered: {exc}")
            continue
        current[entry.name] = [entry.stamp, batch.key]
        if previous and previous[1] == batch.key:
            continue  # touched but same content: same batch, nothing to do
        new_keys.append(batch.key)
        requests.append(dg.RunRequest(run_key=batch.key, partition_key=batch.key, tags={"amr/seed_entry": entry.name}))
    cursor = json.dumps(current, sort_keys=True)
    if not requests:
        return dg.SensorResult(skip_reason="no new or changed seed files", cursor=cursor)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[seed_batches.build_add_request(new_keys)],
        cursor=cursor,
    )
