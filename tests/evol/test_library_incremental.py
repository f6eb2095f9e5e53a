"""``grow_library`` without Dagster: a run reads only the batches whose candidates file changed
(one listing says which), in arrival order, and the library's summary needs no entry file."""

from __future__ import annotations

import polars as pl

from amr_dagster.evol.candidates import from_verified_code
from amr_dagster.evol.embeddings import HashingEmbedder
from amr_dagster.evol.module_library import ModuleLibrary
from amr_dagster.evol.stages import committed_inputs, grow_library
from amr_dagster.storage.layout import DataLayout

CODE = {
    "b1": 'def total(xs: list[int]) -> int:\n    """Sum of xs."""\n    return sum(xs)\n',
    "b2": 'def shout(text: str) -> str:\n    """Upper-case text with an exclamation mark."""\n    return text.upper() + "!"\n',
    "b3": 'def pairs(xs: list) -> list:\n    """Adjacent pairs of xs."""\n    return list(zip(xs, xs[1:]))\n',
    "b0": 'def first(xs: list):\n    """The first element of xs, or None."""\n    return xs[0] if xs else None\n',
}


def _open(folder) -> ModuleLibrary:
    return ModuleLibrary(folder, HashingEmbedder())


def test_each_run_reads_only_new_batches_in_arrival_order(tmp_path, monkeypatch):
    data = DataLayout(tmp_path / "data")
    frames = data.frames()
    for batch in ("b1", "b2"):
        frames.write("library_candidates", batch, from_verified_code(CODE[batch], parent_id=f"{batch}-r", batch=batch))
    first = grow_library(data=data, open_library=_open)
    assert list(first.notes["committed_batches"]) == ["b1", "b2"] and first.checks["candidates_accounted"][0]

    # b3 and b0 arrive; seed dedup saw b3 first, so b3 is committed before b0 (not key order).
    monkeypatch.setattr(DataLayout, "arrival_order", lambda self: ["b1", "b2", "b3", "b0"])
    for batch in ("b3", "b0"):
        frames.write("library_candidates", batch, from_verified_code(CODE[batch], parent_id=f"{batch}-r", batch=batch))
    read: list[str] = []
    original = type(frames).read
    monkeypatch.setattr(type(frames), "read", lambda self, asset, key=None: read.append(key) or original(self, asset, key))
    second = grow_library(data=data, open_library=_open)
    assert read == ["b3", "b0"]
    assert list(second.notes["committed_batches"]) == ["b3", "b0"]
    library = _open(data.library_dir())
    assert [s.batch for s in library.snapshots()[1:]] == ["b1", "b2", "b3", "b0"]
    assert second.metrics["entries"] == 4 and second.notes["by_source"] == {"harvested": 4}
    assert set(committed_inputs(data.library_dir())) == {"b0", "b1", "b2", "b3"}

    # Nothing changed: nothing read. The same candidates written again: read, snapshot reused.
    read.clear()
    assert grow_library(data=data, open_library=_open).metrics["batches_read"] == 0 and read == []
    frames.write("library_candidates", "b2", pl.read_parquet(tmp_path / "data" / "library_candidates" / "b2.parquet"))
    again = grow_library(data=data, open_library=_open)
    assert read == ["b2"] and again.notes["committed_batches"] == {} and len(_open(data.library_dir()).snapshots()) == 5
