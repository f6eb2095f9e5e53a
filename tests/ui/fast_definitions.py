"""The project's code location with the browser test's fast resource config.

The same assets, job, sensor and schedule as ``amr_dagster.definitions``; only the default
resource config differs (one sample per instruction, small token budgets), the way a
deployment sets its own defaults. Runs launched from the UI, by the sensor or by a backfill
therefore get these settings as resource config, visible in each run's config."""

import dagster as dg

from amr_dagster import definitions as project_location
from resources.evolution import EvolSettings
from resources.generation import GenerationSettings

FAST_RESOURCES = {
    "generation": GenerationSettings(n_samples=1, concepts_max_tokens=32, instruction_max_tokens=64, response_max_tokens=160),
    "evolution": EvolSettings(decomposition_max_tokens=96, evolution_max_tokens=160),
}

_project = project_location.defs  # not bound at module scope: Dagster loads exactly one Definitions
defs = dg.Definitions(
    assets=_project.assets,
    asset_checks=_project.asset_checks,
    jobs=_project.jobs,
    sensors=_project.sensors,
    schedules=_project.schedules,
    resources={**_project.resources, **FAST_RESOURCES},
    executor=_project.executor,
)
del _project
