"""``instruction_dataset`` (global): every batch's verified pairs, output-deduplicated,
decontaminated again, exported as JSONL + Parquet with a dataset card.

Reads partitions one at a time from the data root (a non-partitioned asset handed every
partition's frame at once is how memory blows up)."""

import dataclasses
import json
import time

import dagster as dg

from amr_dagster.evol.report import combine_reports
from amr_dagster.dataset.export import build_dataset, dataset_card, write_dataset
from amr_dagster.outcomes import family_counts, summarize
from assets.generation_versions import PROMPTS_VERSION
from resources.benchmarks import BenchmarkSet
from resources.data_root import DataRoot
from resources.generation import GenerationSettings
from resources.llm import LLMResource


class ExportSettings(dg.Config):
    num_perm: int = 256
    threshold: float = 0.7
    shingle_size: int = 5
    exact_dedup: bool = True
    dedup_function_names: bool = True
    dedup_on_code_representation: bool = True


class _StageCount:
    """Rows/accepted/rejected of one stage, summed partition by partition."""

    def __init__(self) -> None:
        self.totals = {"rows": 0, "accepted": 0, "rejected": 0}
        self.reasons: dict[str, int] = {}

    def add(self, frame) -> None:
        counts = summarize(frame)
        for key in self.totals:
            self.totals[key] += counts[key]
        for reason, n in counts["rejected_by_reason"].items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n

    def result(self) -> dict:
        return {**self.totals, "rejected_by_reason_family": family_counts(self.reasons)}


def stage_counts(data_root: DataRoot, stages: list[str], known: dict[str, dict] | None = None) -> dict[str, dict]:
    """Rows/accepted/rejected per stage summed over every partition, one partition at a time
    (``known``: stages already counted elsewhere, not read again)."""
    store = data_root.frames()
    totals: dict[str, dict] = {}
    for stage in stages:
        if known and stage in known:
            totals[stage] = known[stage]
            continue
        count = _StageCount()
        for _, frame in store.iter_partitions(stage):
            count.add(frame)
        totals[stage] = count.result()
    return totals


class _VerifiedPairsPass:
    """The one read of every ``verified_pairs`` partition: it feeds the export and, on the way,
    that stage's counts and each batch's AMR-Evol report (which needs the batch's pairs too)."""

    def __init__(self, store) -> None:
        self.store = store
        self.count = _StageCount()
        self.evol_reports: list[dict] = []

    def __iter__(self):
        from amr_dagster.evol.report import evol_report
        from assets.evolved_responses import report_views

        for key, pairs in self.store.iter_partitions("verified_pairs"):
            self.count.add(pairs)
            if self.store.exists("evolved_responses", key) and self.store.exists("executed_responses", key):
                parsed, executed_evolved = report_views(self.store.read("evolved_responses", key))
                samples = self.store.read("responses", key).height if self.store.exists("responses", key) else None
                self.evol_reports.append(
                    evol_report(self.store.read("executed_responses", key), parsed, executed_evolved, pairs, samples=samples)
                )
            yield key, pairs


@dg.asset(
    deps=["verified_pairs"],
    group_name="dataset",
    kinds={"python", "parquet", "json"},
    code_version="instruction_dataset.v1",
    description="All verified pairs across batches after output near-dedup (instructions, responses, code) "
    "and decontamination, as dataset.jsonl / dataset.parquet with lineage columns and a dataset card.",
)
def instruction_dataset(
    context: dg.AssetExecutionContext,
    config: ExportSettings,
    data_root: DataRoot,
    benchmarks: BenchmarkSet,
    generation: GenerationSettings,
    generator: LLMResource,
    teacher: LLMResource,
) -> dg.MaterializeResult:
    from assets import PARTITIONED_ASSETS

    started = time.perf_counter()
    store = data_root.frames()
    profile = generation.settings_profile()
    export = profile.build("export", config.model_dump())
    verified = _VerifiedPairsPass(store)
    dataset, stats = build_dataset(iter(verified), export, benchmarks.decontaminator(), workdir=data_root.root())
    folder = data_root.root() / "instruction_dataset"
    paths = write_dataset(dataset, folder)
    stages = [key.to_user_string() for a in PARTITIONED_ASSETS for key in a.keys]
    counts = stage_counts(data_root, stages, known={"verified_pairs": verified.count.result()})
    settings = {
        "profile": profile.summary(),
        "generator": _engine_summary(generator),
        "teacher": _engine_summary(teacher),
        "prompts_version": PROMPTS_VERSION,
        "generation": dataclasses.asdict(generation.config()),
        "export": export.__dict__,
        "benchmarks": ["HumanEval", *benchmarks.extra_files],
    }
    evolution = combine_reports(verified.evol_reports) if verified.evol_reports else None  # None: AMR-Evol did not run
    card = dataset_card(stats, counts, settings, evolution)
    (folder / "DATASET_CARD.md").write_text(card)
    (folder / "card.json").write_text(json.dumps({"stats": stats, "stages": counts, "settings": settings, "evolution": evolution}, indent=2, default=str))
    return dg.MaterializeResult(
        metadata={
            "exported_pairs": stats["exported"],
            "profile": profile.name,
            "pass_rate_per_sample": (evolution or {}).get("pass_rate_per_sample"),
            "pass_rate_per_parsed_sample": (evolution or {}).get("pass_rate_per_parsed_sample"),
            "verified_pairs_in": stats["pairs_in"],
            "rejected_by_reason": dg.MetadataValue.json(stats["rejected_by_reason"]),
            "partitions": len(stats["partitions"]),
            "jsonl": dg.MetadataValue.path(str(paths["jsonl"])),
            "parquet": dg.MetadataValue.path(str(paths["parquet"])),
            "card": dg.MetadataValue.md(card),
            "wall_s": round(time.perf_counter() - started, 3),
        }
    )


def _engine_summary(resource: LLMResource) -> dict:
    return {"backend": resource.backend, "model": resource.model or "embedded Gemma 3 270M (Q4_K_M)", "base_url": resource.base_url or None}
