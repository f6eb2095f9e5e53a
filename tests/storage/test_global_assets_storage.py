"""The global assets (``module_library``, ``instruction_dataset``) through real Dagster, with the
data root on local disk and in S3: the library commits one snapshot per batch in order (a module
both batches hold is added once), the export and its card land under the data root."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl

from amr_dagster.evol.candidates import from_verified_code
from amr_dagster.storage.objectstore import open_store
from amr_dagster.outcomes import with_status
from amr_dagster.storage.frames import FrameStore

SHARED = '''
def running_total(values: list[int]) -> list[int]:
    """Return the running totals of values, one per input value, starting from the first."""
    totals, acc = [], 0
    for value in values:
        acc += value
        totals.append(acc)
    return totals
'''


OWN = {
    "a": '''
def initials(name: str) -> str:
    """Return the upper-case initials of each word of name, e.g. "ada lovelace" -> "AL"."""
    return "".join(word[0].upper() for word in name.split() if word)
''',
    "b": '''
def celsius_to_fahrenheit(degrees: float) -> float:
    """Convert a temperature from degrees Celsius to degrees Fahrenheit."""
    return degrees * 9.0 / 5.0 + 32.0
''',
}
TESTS = {"a": "assert initials('ada lovelace') == 'AL'", "b": "assert celsius_to_fahrenheit(100) == 212"}


def _pairs(tag: str) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "id": [f"{tag}-pair-{i}" for i in range(2)],
            "instruction": [f"Solve the task of batch {tag}: {TESTS[tag]}", "Sum a list cumulatively; return every partial total."],
            "response": [OWN[tag], SHARED],
            "code": [OWN[tag], SHARED],
            "tests": [TESTS[tag], "assert running_total([1, 2]) == [1, 3]"],
        }
    )
    return with_status(frame, [None, None])


def test_global_assets_on_the_data_root(amr_storage) -> None:
    from assets import GLOBAL_ASSETS
    from resources import default_resources

    frames = FrameStore()
    for tag in ("a", "b"):
        frames.write("library_candidates", f"batch-{tag}", from_verified_code(SHARED + OWN[tag], parent_id=f"{tag}-resp", batch=f"batch-{tag}"))
        frames.write("verified_pairs", f"batch-{tag}", _pairs(tag))

    result = dg.materialize(GLOBAL_ASSETS, resources=default_resources(), instance=dg.DagsterInstance.get())
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("module_library")[0].metadata.items()}
    assert meta["entries"] == 3  # running_total once, one own function per batch
    assert list(meta["committed_batches"]) == ["batch-a", "batch-b"]
    assert meta["committed_batches"]["batch-b"]["added"] == 1

    export = open_store(str(amr_storage["data"])).child("instruction_dataset")
    records = [json.loads(line) for b in ("batch-a", "batch-b") for line in export.get(f"data/{b}.jsonl").decode().splitlines()]
    # The shared pair is exported once (output near-dedup); each batch's own pair stays.
    assert sorted(r["id"] for r in records) == ["a-pair-0", "a-pair-1", "b-pair-0"]
    card = json.loads(export.get("card.json"))
    assert card["stats"]["exported"] == 3 and card["stats"]["pairs_in"] == 4
    assert export.exists("DATASET_CARD.md") and export.exists("data/batch-b.parquet") and export.exists("judged/batch-a.parquet")
    assert [s["jsonl"] for s in card["shards"]] == ["data/batch-a.jsonl", "data/batch-b.jsonl"]

    # Materializing again commits nothing new: each batch's snapshot is reused.
    again = dg.materialize(GLOBAL_ASSETS, resources=default_resources(), instance=dg.DagsterInstance.get())
    meta = {k: v.value for k, v in again.asset_materializations_for_node("module_library")[0].metadata.items()}
    assert meta["entries"] == 3 and meta["committed_batches"] == {}


def _batch_pairs(batch: str, codes: list[str], tag: str = "") -> pl.DataFrame:
    frame = pl.DataFrame({
        "id": [f"{batch}-pair-{i}{tag}" for i in range(len(codes))],
        "instruction": [f"Write the function of this response{tag}: {code.split('(')[0][5:]}" for code in codes],
        "response": [f"Solution{tag}:\n```python\n{code}```" for code in codes],
        "code": codes,
        "tests": ["assert True"] * len(codes),
        "batch": [batch] * len(codes),
    })
    return with_status(frame, [None] * len(codes))


def test_batches_one_after_another_equal_a_from_scratch_export(amr_storage, tmp_path) -> None:
    """Three batches materialized one after another give the export a from-scratch export of the
    same three gives; re-materializing batch 2 with new pairs replaces its contribution."""
    from amr_dagster.dataset.export import ExportConfig, build_dataset
    from amr_dagster.dataset.incremental import read_dataset
    from amr_dagster.seeds.decontamination import Decontaminator
    from assets import GLOBAL_ASSETS
    from resources import default_resources

    codes = {
        "batch-1": [OWN["a"], SHARED],
        "batch-2": [OWN["b"], SHARED],  # SHARED again: a recorded rejection, exported once
        "batch-3": [OWN["a"], "def triple(x: int) -> int:\n    return 3 * x\n"],
    }
    frames = FrameStore()
    export = open_store(str(amr_storage["data"])).child("instruction_dataset")

    def materialize() -> dict:
        result = dg.materialize(GLOBAL_ASSETS, resources=default_resources(), instance=dg.DagsterInstance.get())
        assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
        return {k: v.value for k, v in result.asset_materializations_for_node("instruction_dataset")[0].metadata.items()}

    def exported(batches: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        card = json.loads(export.get("card.json"))
        assert list(card["stats"]["partitions"]) == batches
        scratch, stats = build_dataset(((b, frames.read("verified_pairs", b)) for b in batches), ExportConfig(), Decontaminator.default(), workdir=tmp_path)
        assert (card["stats"]["exported"], card["stats"]["pairs_in"]) == (stats["exported"], stats["pairs_in"])
        return read_dataset(export, batches, kind="judged"), scratch

    order = list(codes)
    for batch in order:
        frames.write("library_candidates", batch, from_verified_code("\n\n".join(codes[batch]), parent_id=f"{batch}-resp", batch=batch))
        frames.write("verified_pairs", batch, _batch_pairs(batch, codes[batch]))
        meta = materialize()
        assert meta["batches_judged"] == 1
    judged, scratch = exported(order)
    assert judged.equals(scratch)
    reasons = dict(zip(judged["id"], judged["reject_reason"]))
    assert reasons["batch-2-pair-1"] is not None and reasons["batch-3-pair-0"] is not None  # copies of batch-1's pairs

    # Batch 2 re-materialized with new pairs: its rows are replaced and batch 3 is judged again.
    frames.write("verified_pairs", "batch-2", _batch_pairs("batch-2", [OWN["b"]], tag=" v2"))
    meta = materialize()
    assert meta["batches_judged"] == 2 and meta["verified_pairs_in"] == 2 + 1 + 2
    judged, scratch = exported(order)
    assert judged.equals(scratch)
    assert judged.filter(pl.col("batch") == "batch-2")["id"].to_list() == ["batch-2-pair-0 v2"]
    assert judged["id"].n_unique() == judged.height == 5

    # Nothing changed: nothing read, nothing judged, the library reuses every snapshot.
    meta = materialize()
    assert meta["batches_judged"] == 0
