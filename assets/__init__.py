"""The Dagster asset layer: one module per stage, thin wrappers around ``amr_dagster``."""

from assets.deduped_seeds import deduped_seeds
from assets.filtered_seeds import filtered_seeds
from assets.seed_functions import seed_functions

# Every asset partitioned by seed batch, in pipeline order (the job, the schedule and the CLI use it).
PARTITIONED_ASSETS = [seed_functions, filtered_seeds, deduped_seeds]
GLOBAL_ASSETS: list = []
