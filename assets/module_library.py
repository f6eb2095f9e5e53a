"""``module_library`` (global): verified function modules with embeddings, grown batch by batch.

Each batch's accepted ``library_candidates`` are committed as one immutable snapshot (near-copies
above the novelty threshold are not added twice). Only batches whose candidates file changed
since the library committed it are read (one listing tells), in arrival order; a batch already
committed with the same candidates is not re-added."""

from amr_dagster.evol.stages import grow_library
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="module_library",
    group="amr_evol",
    run=grow_library,
    deps=("library_candidates",),
    partitioned=False,
    kinds=("python", "parquet", "faiss"),
    checks={"candidates_accounted": "every candidate of a newly committed batch was added or rejected with a reason"},
    description="The functional-module library of AMR-Evol: verified modules with MiniLM embeddings, "
    "an IVF index once large, and one snapshot per committed batch (evolved responses record theirs).",
)
module_library = stage_asset(SPEC)
