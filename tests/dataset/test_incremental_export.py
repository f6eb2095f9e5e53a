"""The incremental export (``dataset.incremental``) without Dagster: judged one batch at a time
it equals the from-scratch export (``build_dataset``), whether batches come one per update or
several at once; a later batch's copy of an earlier pair is a recorded rejection; a changed or
vanished batch replaces its contribution; and an update reads only the batches that changed."""

from __future__ import annotations

import json

import polars as pl
import pytest

from amr_dagster.dataset.export import ExportConfig, build_dataset
from amr_dagster.dataset.incremental import ExportState, read_dataset, shard_names
from amr_dagster.outcomes import with_status
from amr_dagster.schemas import PARTITIONED_STAGES
from amr_dagster.seeds.decontamination import Decontaminator
from amr_dagster.storage.frames import FrameStore
from amr_dagster.storage.objectstore import LocalObjectStore

FUNCS = {
    "area": ("Compute the area of a rectangle from its width and height.", "def area(w: float, h: float) -> float:\n    return w * h\n"),
    "greet": ("Return a greeting for the given name.", "def greet(name: str) -> str:\n    return 'Hello, ' + name + '!'\n"),
    "clamp": ("Clamp a value into the closed range [lo, hi].", "def clamp(x: int, lo: int, hi: int) -> int:\n    return max(lo, min(hi, x))\n"),
    "vowels": ("Count the vowels in a string, ignoring case.", "def vowels(s: str) -> int:\n    return sum(c in 'aeiou' for c in s.lower())\n"),
    "flatten": ("Flatten a list of lists into one list, keeping order.", "def flatten(xs: list) -> list:\n    return [y for x in xs for y in x]\n"),
    "evens": ("Keep only the even numbers of a list of integers.", "def evens(xs: list[int]) -> list[int]:\n    return [x for x in xs if x % 2 == 0]\n"),
}


def pairs(batch: str, names: list[str], tag: str = "") -> pl.DataFrame:
    """A ``verified_pairs`` frame of accepted pairs, one per function name."""
    rows = []
    for name in names:
        instruction, code = FUNCS[name]
        rows.append({
            "id": f"{batch}-{name}{tag}", "instruction": instruction + tag, "response": f"Here it is{tag}.\n```python\n{code}```",
            "code": code, "tests": f"assert callable({name})", "origin": "direct", "batch": batch, "instruction_id": f"{batch}-i-{name}",
            "seed_id": f"seed-{name}", "seed_name": name, "seed_source_path": f"{name}.py", "seed_line_start": 1, "seed_line_end": 3,
        })
    return with_status(pl.DataFrame(rows), [None] * len(rows))


@pytest.fixture(scope="module")
def decontaminator() -> Decontaminator:
    return Decontaminator.default()


class Site:
    """A data root with the frame store, the export state folder and the published folder."""

    def __init__(self, root, decontaminator: Decontaminator) -> None:
        self.frames = FrameStore(root / "data")
        self.out = LocalObjectStore(root / "data" / "instruction_dataset")
        self.state_dir = root / "data" / "export_state"
        self.decontaminator = decontaminator

    def write(self, batch: str, frame: pl.DataFrame) -> None:
        self.frames.write("verified_pairs", batch, frame)

    def update(self, arrival: list[str], config: ExportConfig = ExportConfig()):
        return ExportState(self.state_dir, config, self.decontaminator).update(self.frames, self.out, arrival)

    def judged(self, state) -> pl.DataFrame:
        return read_dataset(self.out, [e["batch"] for e in state["batches"]], kind="judged")


BATCHES = {
    "b1": ["area", "greet"],
    "b2": ["greet", "clamp", "vowels"],  # greet: an exact copy of b1's pair
    "b3": ["flatten", "area", "evens"],  # area: again
}


def from_scratch(site: Site, order: list[str], tmp_path) -> pl.DataFrame:
    frames = ((b, site.frames.read("verified_pairs", b)) for b in order)
    dataset, _ = build_dataset(frames, ExportConfig(), site.decontaminator, workdir=tmp_path)
    return dataset


def test_one_batch_per_update_equals_the_from_scratch_export(tmp_path, decontaminator):
    site = Site(tmp_path, decontaminator)
    order = list(BATCHES)
    for batch in order:
        site.write(batch, pairs(batch, BATCHES[batch]))
        state, report = site.update(order)
        assert report.judged == [batch] and report.rewound_to is None
    judged = site.judged(state)
    assert judged.equals(from_scratch(site, order, tmp_path))
    # The cross-batch copies are recorded rejections of the later batch, not silent drops.
    reasons = dict(zip(judged["id"], judged["reject_reason"]))
    assert reasons["b2-greet"] == "output_exact_duplicate: instruction"
    assert reasons["b3-area"] == "output_exact_duplicate: instruction"
    assert sum(e["pairs_in"] for e in state["batches"]) == judged.height == 8
    assert [e["exported"] for e in state["batches"]] == [2, 2, 2]
    exported = read_dataset(site.out, order)
    assert exported["id"].to_list() == ["b1-area", "b1-greet", "b2-clamp", "b2-vowels", "b3-flatten", "b3-evens"]
    lines = (tmp_path / "data" / "instruction_dataset" / shard_names("b3")["jsonl"]).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["b3-flatten", "b3-evens"]


def test_batches_in_one_update_follow_arrival_order(tmp_path, decontaminator):
    one_by_one, together = Site(tmp_path / "a", decontaminator), Site(tmp_path / "b", decontaminator)
    arrival = ["b3", "b1", "b2"]  # not key order: b3's area is kept, b1's is the copy
    for batch in arrival:
        one_by_one.write(batch, pairs(batch, BATCHES[batch]))
        state_a, _ = one_by_one.update(arrival)
        together.write(batch, pairs(batch, BATCHES[batch]))
    state_b, report = together.update(arrival)
    assert report.judged == arrival
    assert one_by_one.judged(state_a).equals(together.judged(state_b))
    assert dict(zip(*together.judged(state_b).select("id", "reject_reason")))["b1-area"] == "output_exact_duplicate: instruction"


def test_a_changed_batch_replaces_its_contribution(tmp_path, decontaminator):
    site = Site(tmp_path, decontaminator)
    order = list(BATCHES)
    for batch in order:
        site.write(batch, pairs(batch, BATCHES[batch]))
        site.update(order)
    # The same content written again (a re-materialization): nothing is judged again.
    site.write("b2", pairs("b2", BATCHES["b2"]))
    state, report = site.update(order)
    assert report.judged == [] and report.rewound_to is None and report.summarized == ["b2"]
    # New content for b2: b2 and b3 (judged against b2) are judged again; b1 stays.
    site.write("b2", pairs("b2", ["clamp", "flatten"], tag=" (v2)"))
    state, report = site.update(order)
    assert report.judged == ["b2", "b3"] and report.rewound_to == 1
    judged = site.judged(state)
    assert judged.equals(from_scratch(site, order, tmp_path))
    assert judged.filter(pl.col("batch") == "b2")["id"].to_list() == ["b2-clamp (v2)", "b2-flatten (v2)"]  # old rows gone
    assert judged["id"].n_unique() == judged.height
    # b3's flatten is now the copy of b2's (same function names), exported once.
    assert dict(zip(*judged.select("id", "reject_reason")))["b3-flatten"].startswith("output_repeated_names")
    # A vanished batch: its shards go, the batches after it are judged without it.
    (tmp_path / "data" / "verified_pairs" / "b2.parquet").unlink()
    state, report = site.update(order)
    assert report.removed == ["b2"] and report.judged == ["b3"]
    assert not (tmp_path / "data" / "instruction_dataset" / shard_names("b2")["judged"]).exists()
    assert site.judged(state).equals(from_scratch(site, ["b1", "b3"], tmp_path))


def test_changed_settings_judge_everything_again(tmp_path, decontaminator):
    site = Site(tmp_path, decontaminator)
    for batch in BATCHES:
        site.write(batch, pairs(batch, BATCHES[batch]))
    site.update(list(BATCHES))
    loose = ExportConfig(exact_dedup=False, dedup_function_names=False, threshold=0.99)
    state, report = site.update(list(BATCHES), loose)
    assert report.rebuilt and report.judged == list(BATCHES)
    reasons = dict(zip(*site.judged(state).select("id", "reject_reason")))
    # Without the sanitizing keys the copies are caught by MinHash, naming the kept pair.
    assert reasons["b2-greet"] == "output_instruction_exact_duplicate: b1-greet"
    assert reasons["b3-area"] == "output_instruction_exact_duplicate: b1-area"
    assert sum(r is not None for r in reasons.values()) == 2


def test_an_update_reads_only_the_new_batch(tmp_path, decontaminator, monkeypatch):
    site = Site(tmp_path, decontaminator)
    order = [f"b{i}" for i in range(1, 6)]
    names = list(FUNCS)
    for i, batch in enumerate(order[:-1]):
        site.write(batch, pairs(batch, [names[i], names[i + 1]]))
        # every stage of the batch, as the pipeline leaves it (the card counts them)
        for stage in PARTITIONED_STAGES[:3]:
            site.frames.write(stage, batch, with_status(pl.DataFrame({"id": [f"{batch}-{stage}"]}), [None]))
    state, _ = site.update(order)
    site.write(order[-1], pairs(order[-1], [names[5], names[0]]))
    read: list[str] = []
    get = site.frames.objects.get
    monkeypatch.setattr(site.frames.objects, "get", lambda key: read.append(key) or get(key))
    state, report = site.update(order)
    assert report.judged == ["b5"] and read == ["verified_pairs/b5.parquet"]
    assert state["summaries"]["b1"]["stages"]["seed_functions"]["rows"] == 1
    assert dict(zip(*site.judged(state).select("id", "reject_reason")))["b5-area"] == "output_exact_duplicate: instruction"
