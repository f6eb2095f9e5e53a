"""``instruction_dataset`` (global): every batch's verified pairs, output-deduplicated,
decontaminated again, exported as JSONL + Parquet with a dataset card.

Incremental (``amr_dagster.dataset.incremental``): each run reads only the batches whose
partition files changed and judges only new or changed pairs against the kept state, so a batch
costs the same however many came before it."""

from amr_dagster.dataset.export import ExportConfig
from amr_dagster.dataset.stages import export_dataset
from assets.stage import StageSpec, stage_asset
from resources.derived import CoreConfig, derive

# The benchmark files belong to the ``benchmarks`` resource (one set for every stage).
ExportSettings = derive(ExportConfig, CoreConfig, name="ExportSettings", exclude=("benchmark_files",))

SPEC = StageSpec(
    name="instruction_dataset",
    group="dataset",
    run=export_dataset,
    deps=("verified_pairs",),
    config=ExportSettings,
    partitioned=False,
    kinds=("python", "parquet", "json"),
    checks={"pairs_accounted": "exported + rejected (output dedup, decontamination) = verified pairs in"},
    description="All verified pairs across batches after output near-dedup (instructions, responses, code) "
    "and decontamination, one JSONL / Parquet shard per batch with lineage columns, and a dataset card; "
    "each run judges only new or changed batches.",
)
instruction_dataset = stage_asset(SPEC)
