"""The code location: assets, checks, job, sensor, schedule and resources in one Definitions.

The only place in ``amr_dagster`` that assembles Dagster objects; everything it wires lives in
``assets/``, ``resources/`` and ``sensors/``. Steps run in-process by default: the LLM held by
a resource loads once per run instead of once per step process (multiprocess executors would
reload the model for every step).
"""

from __future__ import annotations

import dagster as dg

from assets import EXTERNAL_ASSETS, GLOBAL_ASSETS, PARTITIONED_ASSETS, progress_log
from resources import default_resources
from sensors.backfill_schedule import backfill_schedule
from sensors.seed_sensor import PIPELINE_JOB, seed_file_sensor

progress_log.install()  # long stages report rows done / total, rate and ETA in the run's logs

amr_pipeline = dg.define_asset_job(
    PIPELINE_JOB,
    selection=dg.AssetSelection.assets(*PARTITIONED_ASSETS, *GLOBAL_ASSETS),
    description="Every stage for one seed batch (mining, filters, dedup, generation, evolution, verification), "
    "then the global module library and dataset export.",
)

defs = dg.Definitions(
    assets=[*EXTERNAL_ASSETS, *PARTITIONED_ASSETS, *GLOBAL_ASSETS],
    jobs=[amr_pipeline],
    sensors=[seed_file_sensor],
    schedules=[backfill_schedule],
    resources=default_resources(),
    executor=dg.in_process_executor,
)
