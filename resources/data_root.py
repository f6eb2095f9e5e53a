"""The data root: the one resource that says where data lives.

Everything under it (stage frames through the IO manager, the batch registry, the MinHash
store, the module library, the LLM cache, the dataset) is handed out by the ``DataLayout`` it
returns, so setting ``path`` once in resource config (the CLI's ``--data-dir`` does) moves all
of them. ``path`` (a local folder or ``s3://bucket/prefix``, S3 through dagster-aws) empty: the
deployment's ``AMR_DATA_DIR`` where the step runs, else ``./.amr/data`` (resolved at run time,
like an ``EnvVar``, never when the definitions load)."""

from __future__ import annotations

import dagster as dg

from amr_dagster.storage.layout import DataLayout


class DataRoot(dg.ConfigurableResource):
    path: str = ""

    def layout(self) -> DataLayout:
        from resources.s3 import client_factory

        return DataLayout.resolve(self.path, client_factory())

    def frames(self):
        return self.layout().frames()

    def batches(self):
        return self.layout().batches()
