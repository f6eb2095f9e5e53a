"""The Dagster asset layer: one module per stage holding its ``StageSpec``; ``assets.stage``
builds every asset from its spec. Lineage starts at the external ``seed_files``."""

import dagster as dg

from assets.decomposed_modules import decomposed_modules
from assets.deduped_seeds import deduped_seeds
from assets.evolved_responses import evolved_responses
from assets.executed_responses import executed_responses
from assets.filtered_seeds import filtered_seeds
from assets.instruction_dataset import instruction_dataset
from assets.humaneval_eval import humaneval_eval
from assets.instructions import instructions
from assets.library_candidates import library_candidates
from assets.module_library import module_library
from assets.partitions import seed_batches
from assets.responses import responses
from assets.seed_concepts import seed_concepts
from assets.seed_functions import seed_functions
from assets.verified_pairs import verified_pairs

#: The seed files themselves: registered by the sensor or the CLI, never materialized here.
seed_files = dg.AssetSpec(
    "seed_files",
    partitions_def=seed_batches,
    group_name="seeds",
    kinds={"file"},
    owners=["team:amr-dagster"],
    description="One seed file or folder of Python source per partition (.py, folder, .tar.gz/.zip, "
    ".jsonl/.parquet with `content`), registered under the data root's batch registry.",
)

SEED_ASSETS = [seed_functions, filtered_seeds, deduped_seeds]
GENERATION_ASSETS = [seed_concepts, instructions, responses, executed_responses]
EVOL_ASSETS = [library_candidates, decomposed_modules, evolved_responses]
# Every asset partitioned by seed batch, in pipeline order (the schedule and the CLI use it).
PARTITIONED_ASSETS = [*SEED_ASSETS, *GENERATION_ASSETS, *EVOL_ASSETS, verified_pairs]
# Global assets: the module library (between library_candidates and evolved_responses) and the export.
GLOBAL_ASSETS = [module_library, instruction_dataset]
EXTERNAL_ASSETS = [seed_files]
# Evaluation assets: selectable (CLI --select, UI) but not part of a default pipeline run.
EVAL_ASSETS = [humaneval_eval]
