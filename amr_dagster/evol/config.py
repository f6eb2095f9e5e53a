"""AMR-Evol's settings and its versioned prompts (``prompts/amr_evol.yaml``), shared by
decomposition and evolution; the prompt version is part of both stages' code versions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class EvolConfig:
    """Settings shared by decomposition and evolution (the paper's ablation axes included).

    ``use_decomposition=False``: no module list in the evolution prompt, and retrieval queries
    come from the instruction and direct response (see ``retrieval_queries``).
    ``use_retrieval=False``: no retrieved library modules in the evolution prompt.
    ``chat=True``: send chat messages (instruct teachers) instead of a completion prompt.
    ``require_typed_signature=True`` rejects modules lacking a parameter or return annotation
    (``untyped_signature``); off by default because the embedded 270M teacher mostly copies the
    solution's own untyped ``def`` lines; every module row records ``typed`` either way.
    """

    global_seed: int = 0
    use_decomposition: bool = True
    use_retrieval: bool = True
    chat: bool = False
    temperature: float = 0.0
    top_p: float = 1.0
    decomposition_max_tokens: int = 384
    evolution_max_tokens: int = 512
    max_modules: int = 8
    require_typed_signature: bool = False
    max_retrieved: int = 3
    #: library entries kept per retrieval query after dropping the instruction's own code
    top_k: int = 3
    # Measured by bench/similarity_floor.py (600 stdlib functions, MiniLM): at 0.58 the right
    # module stays for 79% of queries, an unrelated best match gets through for 19% (100% at 0).
    min_similarity: float = 0.58
    max_retrieved_code_chars: int = 1200
    library_seeds: str = "executed"  # which seed functions enter the library: see evol/admission.py


@lru_cache(maxsize=1)
def evol_prompts() -> dict[str, Any]:
    """The versioned prompt file ``amr_dagster/prompts/amr_evol.yaml``, parsed once."""
    text = resources.files("amr_dagster").joinpath("prompts/amr_evol.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def prompt_version() -> str:
    return str(evol_prompts()["version"])
