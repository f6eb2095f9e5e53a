"""``module_library`` (global): verified function modules with embeddings, grown batch by batch.

Each batch's accepted ``library_candidates`` are committed as one immutable snapshot (near-copies
above the novelty threshold are not added twice). Batches are read one at a time from the data
root; a batch already committed with the same candidates is not re-added."""

import time

import dagster as dg

from resources.data_root import DataRoot
from resources.evolution import ModuleLibraryResource


@dg.asset(
    deps=["library_candidates"],
    group_name="amr_evol",
    kinds={"python", "parquet", "faiss"},
    code_version="module_library.v1",
    description="The functional-module library of AMR-Evol: verified modules with MiniLM embeddings, "
    "an IVF index once large, and one snapshot per committed batch (evolved responses record theirs).",
)
def module_library(context: dg.AssetExecutionContext, data_root: DataRoot, module_library_store: ModuleLibraryResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    store = data_root.frames()
    committed: dict[str, dict] = {}
    for batch, candidates in store.iter_partitions("library_candidates"):
        result = module_library_store.add_batch(candidates, batch)
        if not result.reused:
            outcomes = result.outcomes
            committed[batch] = {
                "snapshot": result.snapshot.snapshot_id,
                "added": result.snapshot.added,
                "candidates": outcomes.height,
                "rejected_by_reason": dict(outcomes.filter(outcomes["status"] == "rejected").group_by("reject_reason").len().iter_rows()),
            }
    summary = module_library_store.library().summary()
    context.log.info(f"module library: {summary['entries']} entries, snapshot {summary['latest_snapshot']}")
    return dg.MaterializeResult(
        metadata={
            "entries": summary["entries"],
            "latest_snapshot": summary["latest_snapshot"],
            "by_source": dg.MetadataValue.json(summary["by_source"]),
            "index": summary["index"],
            "embedding_model": summary["model_id"],
            "committed_batches": dg.MetadataValue.json(committed),
            "wall_s": round(time.perf_counter() - started, 3),
        }
    )
