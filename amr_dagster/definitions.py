"""The code location: assets, checks, job, sensor, schedule and resources in one Definitions.

The only place in ``amr_dagster`` that assembles Dagster objects; everything it wires lives in
``assets/``, ``resources/`` and ``sensors/``. Steps run in-process by default: the LLM held by
a resource loads once per run instead of once per step process (multiprocess executors would
reload the model for every step).
"""

from __future__ import annotations

import dagster as dg

from assets import EVAL_ASSETS, EXTERNAL_ASSETS, GLOBAL_ASSETS, PARTITIONED_ASSETS, progress_log
from resources import default_resources
from sensors.backfill_schedule import backfill_schedule
from sensors.seed_sensor import PIPELINE_JOB, seed_file_sensor

EVALUATION_JOB = "evaluation"

progress_log.install()  # long stages report rows done / total, rate and ETA in the run's logs

amr_pipeline = dg.define_asset_job(
    PIPELINE_JOB,
    selection=dg.AssetSelection.assets(*PARTITIONED_ASSETS, *GLOBAL_ASSETS),
    description="Every stage for one seed batch (mining, filters, dedup, generation, evolution, verification), "
    "then the global module library and dataset export.",
)

# Evaluation is not part of a batch's run (the sensor and the schedule launch amr_pipeline):
# it scores a model, launched on its own (UI, or `amr-dagster run --select humaneval_eval`).
evaluation = dg.define_asset_job(
    EVALUATION_JOB,
    selection=dg.AssetSelection.assets(*EVAL_ASSETS),
    description="HumanEval pass@1 (greedy) and pass@k (sampled) of the generator, in the project's sandbox.",
)

defs = dg.Definitions(
    assets=[*EXTERNAL_ASSETS, *PARTITIONED_ASSETS, *GLOBAL_ASSETS, *EVAL_ASSETS],
    jobs=[amr_pipeline, evaluation],
    sensors=[seed_file_sensor],
    schedules=[backfill_schedule],
    resources=default_resources(),
    executor=dg.in_process_executor,
)
