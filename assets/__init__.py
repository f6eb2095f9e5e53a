"""The Dagster asset layer: one module per stage, thin wrappers around ``amr_dagster``."""

from assets.deduped_seeds import deduped_seeds
from assets.executed_responses import executed_responses
from assets.filtered_seeds import filtered_seeds
from assets.instruction_dataset import instruction_dataset
from assets.instructions import instructions
from assets.responses import responses
from assets.seed_concepts import seed_concepts
from assets.seed_functions import seed_functions
from assets.verified_pairs import verified_pairs

SEED_ASSETS = [seed_functions, filtered_seeds, deduped_seeds]
GENERATION_ASSETS = [seed_concepts, instructions, responses, executed_responses]
# Every asset partitioned by seed batch, in pipeline order (the job, the schedule and the CLI use it).
PARTITIONED_ASSETS = [*SEED_ASSETS, *GENERATION_ASSETS, verified_pairs]
GLOBAL_ASSETS = [instruction_dataset]
