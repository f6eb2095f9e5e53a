"""SelfCodeAlign generation: S->C (``seed_concepts``), C->I (``instructions``), I->R (``responses``).

Plain Python over polars frames; ``stages`` is what the Dagster assets call. Their columns:
``amr_dagster.schemas``.
"""

from amr_dagster.generation.concepts import seed_concepts
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.instructions import instructions
from amr_dagster.generation.responses import responses

__all__ = [
    "GenerationConfig",
    "instructions",
    "responses",
    "seed_concepts",
]
