"""The project's code location with the browser test's fast resource config.

The same assets, job, sensor and schedule as ``amr_dagster.definitions``; only the default
resource config differs (one sample per instruction, small token budgets), the way a
deployment sets its own defaults. Runs launched from the UI, by the sensor or by a backfill
therefore get these settings as resource config, visible in each run's config."""

import dagster as dg

from amr_dagster.definitions import defs as project
from resources.evolution import EvolSettings
from resources.generation import GenerationSettings

FAST_RESOURCES = {
    "generation": GenerationSettings(n_samples=1, concepts_max_tokens=32, instruction_max_tokens=64, response_max_tokens=160),
    "evolution": EvolSettings(decomposition_max_tokens=96, evolution_max_tokens=160),
}

defs = dg.Definitions(
    assets=project.assets,
    asset_checks=project.asset_checks,
    jobs=project.jobs,
    sensors=project.sensors,
    schedules=project.schedules,
    resources={**project.resources, **FAST_RESOURCES},
    executor=project.executor,
)
