"""SelfCodeAlign generation: S->C (``seed_concepts``), C->I (``instructions``), I->R (``responses``).

Plain Python over polars frames; the Dagster assets in ``assets/`` call these functions.
"""

from amr_dagster.generation.concepts import CONCEPT_SCHEMA, seed_concepts
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.instructions import INSTRUCTION_SCHEMA, instructions
from amr_dagster.generation.responses import RESPONSE_SCHEMA, responses

__all__ = [
    "CONCEPT_SCHEMA",
    "INSTRUCTION_SCHEMA",
    "RESPONSE_SCHEMA",
    "GenerationConfig",
    "instructions",
    "responses",
    "seed_concepts",
]
