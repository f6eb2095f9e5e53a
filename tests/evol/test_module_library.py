"""ModuleLibrary: candidates from seeds and verified code, novelty, snapshots, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from amr_dagster.evol.embeddings import HashingEmbedder, SentenceEmbedder
from amr_dagster.evol.candidates import HARVESTED, SANDBOX_VERIFIED, SEED, SEED_VERIFIED, from_seed_rows, from_verified_code
from amr_dagster.evol.functions import module_text, normalise_signature, parse_functions, query_text
from amr_dagster.evol.module_library import EMPTY_SNAPSHOT, ModuleLibrary
from amr_dagster.outcomes import summarize

SEED_ROWS = [
    {
        "id": "seed-1",
        "batch": "b1",
        "code": 'def moving_average(xs: list[float], k: int) -> list[float]:\n    """Average of every window of k consecutive values."""\n    return [sum(xs[i:i + k]) / k for i in range(len(xs) - k + 1)]\n',
        "imports": [],
    },
    {
        "id": "seed-2",
        "batch": "b1",
        "code": 'def parse_iso(text: str) -> dt.date:\n    """Parse an ISO 8601 date such as 2024-01-31."""\n    return dt.date.fromisoformat(text)\n',
        "imports": ["import datetime as dt"],
    },
    {"id": "seed-3", "batch": "b1", "code": "def undocumented(x):\n    return x * 2\n", "imports": []},
    {"id": "seed-4", "batch": "b1", "code": "def broken(:\n    pass\n", "imports": []},
    {"id": "seed-5", "batch": "b1", "code": "X = 1\n", "imports": []},
]

VERIFIED_CODE = '''
import re
import math, os
from collections import Counter

WORD = re.compile(r"[a-z']+")


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def word_counts(text: str) -> dict[str, int]:
    return dict(Counter(_words(text)))


async def fetch_all(urls):
    """Fetch every URL."""
    return [u for u in urls]


class Helper:
    def method(self):
        return 1


def placeholder():
    """Filled in later."""
    raise NotImplementedError


def test_word_counts():
    assert word_counts("a a b") == {"a": 2, "b": 1}
'''


def test_parse_functions_splits_signature_docstring_and_body() -> None:
    (f,) = parse_functions('@cache\ndef f(a: int, *b, c=2, **d) -> str:\n    """Doc\n\n    more."""\n    x = 1\n    return str(x)\n')
    assert f.name == "f"
    assert f.signature == "f(a: int, *b, c=2, **d) -> str"
    assert f.description == "Doc\n\nmore."
    assert f.body == "x = 1\nreturn str(x)"
    assert f.code.startswith("@cache\ndef f(")
    assert normalise_signature("def g(x) -> int:") == "g(x) -> int"
    assert normalise_signature("async def g(x):") == "async g(x)"
    assert normalise_signature("(x) -> int", "g") == "g(x) -> int"
    assert module_text("g", "def g(x):", "Double x.", "return 2 * x") == "g(x)\nDouble x.\nreturn 2 * x"
    assert query_text("g", "g(x)", "") == "g(x)"


def test_from_seed_rows_keeps_documented_functions_and_explains_the_rest() -> None:
    candidates = from_seed_rows(SEED_ROWS)
    assert candidates.height == len(SEED_ROWS)
    by_parent = {r["parent_id"]: r for r in candidates.iter_rows(named=True)}
    avg = by_parent["seed-1"]
    assert avg["status"] == "accepted" and avg["reject_reason"] is None
    assert (avg["name"], avg["signature"]) == ("moving_average", "moving_average(xs: list[float], k: int) -> list[float]")
    assert avg["description"] == "Average of every window of k consecutive values."
    assert (avg["source"], avg["verified"], avg["verified_how"], avg["batch"]) == (SEED, True, SEED_VERIFIED, "b1")
    assert avg["embed_text"].startswith("moving_average(xs: list[float], k: int) -> list[float]\nAverage of every window")
    assert by_parent["seed-2"]["code"].startswith("import datetime as dt\n\ndef parse_iso(")
    assert by_parent["seed-3"]["reject_reason"] == "no_docstring"
    assert by_parent["seed-4"]["reject_reason"] == "syntax_error: line 1"
    assert by_parent["seed-5"]["reject_reason"] == "no_function"
    assert summarize(candidates)["accepted"] == 2
    # same rows as a polars frame
    assert from_seed_rows(pl.DataFrame(SEED_ROWS)).equals(candidates)


def test_from_verified_code_harvests_top_level_functions_with_their_imports() -> None:
    candidates = from_verified_code(VERIFIED_CODE, parent_id="pair-9", batch="b2")
    rows = {r["name"]: r for r in candidates.iter_rows(named=True)}
    assert list(rows) == ["_words", "word_counts", "fetch_all", "placeholder", "test_word_counts"]  # no methods
    wc = rows["word_counts"]
    assert wc["status"] == "accepted" and wc["description"] == ""
    # with the imports, constant and helper it uses, in module order, and nothing else
    assert wc["code"] == (
        "import re\nfrom collections import Counter\n\n"
        "WORD = re.compile(r\"[a-z']+\")\n\n"
        "def _words(text: str) -> list[str]:\n    return WORD.findall(text.lower())\n\n"
        "def word_counts(text: str) -> dict[str, int]:\n    return dict(Counter(_words(text)))"
    )
    assert wc["embed_text"] == "word_counts(text: str) -> dict[str, int]\nreturn dict(Counter(_words(text)))"
    namespace: dict = {}
    exec(wc["code"], namespace)  # the stored module runs on its own
    assert namespace["word_counts"]("It is what it is") == {"it": 2, "is": 2, "what": 1}
    assert (wc["source"], wc["parent_id"], wc["verified_how"]) == (HARVESTED, "pair-9", SANDBOX_VERIFIED)
    assert rows["fetch_all"]["signature"] == "async fetch_all(urls)"
    assert rows["placeholder"]["reject_reason"] == "trivial_body"
    assert rows["test_word_counts"]["reject_reason"] == "test_function"
    broken = from_verified_code("def f(:\n", parent_id="pair-10", batch="b2")
    assert broken.height == 1 and broken["reject_reason"][0] == "syntax_error: line 1"


def _functions(n: int, prefix: str) -> str:
    """n distinct small functions (distinct names and words, so hashing vectors differ)."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    out = []
    for i in range(n):
        a, b, c = words[i % 10], words[(i // 10) % 10], words[(i // 100) % 10]
        out.append(f"def {prefix}_{a}_{b}_{c}_{i}(value):\n    return value + {i}  # {a} {b} {c}\n")
    return "\n\n".join(out)


def test_snapshots_hide_later_batches_and_survive_reopening(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    library = ModuleLibrary(tmp_path / "lib", embedder)
    assert library.latest_snapshot().snapshot_id == EMPTY_SNAPSHOT and len(library) == 0
    assert library.retrieve(["anything"], k=3).height == 0

    first = library.add_batch(from_seed_rows(SEED_ROWS), batch="b1")
    second = library.add_batch(from_verified_code(VERIFIED_CODE, parent_id="pair-9", batch="b2"), batch="b2")
    assert first.snapshot.snapshot_id.startswith("v0001-") and second.snapshot.snapshot_id.startswith("v0002-")
    assert (first.snapshot.entries, second.snapshot.entries) == (2, 5)
    for result in (first, second):  # nothing lost: every candidate has an outcome
        assert summarize(result.outcomes)["rows"] == result.outcomes.height
        assert set(result.outcomes["snapshot_id"]) == {result.snapshot.snapshot_id}

    query = query_text("count_words", "count_words(text: str) -> dict[str, int]", "Count words in a text.")
    latest = library.retrieve([query], k=4)
    assert "word_counts" in latest["name"].to_list()
    assert set(latest["library_snapshot"]) == {second.snapshot.snapshot_id}
    old = library.retrieve([query], k=4, snapshot=first.snapshot.snapshot_id)
    assert set(old["name"]) == {"moving_average", "parse_iso"}
    assert set(old["added_in_snapshot"]) == {first.snapshot.snapshot_id}
    assert library.snapshot_for_batch("b1") == first.snapshot
    summary = library.summary()
    assert summary["entries"] == 5 and summary["by_source"] == {"harvested": 3, "seed": 2}
    assert summary["latest_snapshot"] == second.snapshot.snapshot_id and summary["index"] == "exact"

    reopened = ModuleLibrary(tmp_path / "lib", HashingEmbedder())
    assert reopened.snapshots() == library.snapshots()
    assert reopened.retrieve([query], k=4).equals(latest)
    assert reopened.retrieve([query], k=4, snapshot=first.snapshot.snapshot_id).equals(old)
    with pytest.raises(KeyError):
        reopened.retrieve([query], snapshot="v0009-nothere")


def test_retrieve_accepts_decomposed_module_rows(tmp_path: Path) -> None:
    library = ModuleLibrary(tmp_path, HashingEmbedder())
    library.add_batch(from_seed_rows(SEED_ROWS), batch="b1")
    modules = pl.DataFrame(
        {"name": ["parse_date"], "signature": ["def parse_date(text: str) -> date"], "description": ["Parse an ISO date string."]}
    )
    hits = library.retrieve(modules, k=1)
    assert hits["name"].to_list() == ["parse_iso"] and hits["rank"].to_list() == [1]
    assert library.retrieve(modules, k=2, min_similarity=1.01).height == 0


def test_novelty_threshold_rejects_near_copies_and_names_the_original(tmp_path: Path) -> None:
    library = ModuleLibrary(tmp_path, HashingEmbedder(), novelty_threshold=0.95)
    base = "def clamp_value(value, low, high):\n    return max(low, min(high, value))\n"
    first = library.add_batch(from_verified_code(base, parent_id="p1", batch="b1"), batch="b1")
    original = first.outcomes["module_id"][0]

    spaced = "def clamp_value(value, low, high):\n    return max(low,  min(high, value))\n"
    other = "def slugify(title):\n    return '-'.join(title.lower().split())\n"
    batch2 = pl.concat(
        [
            from_verified_code(base, parent_id="p2", batch="b2"),  # identical code
            from_verified_code(spaced, parent_id="p3", batch="b2"),  # reformatted: different code, same vector
            from_verified_code(other, parent_id="p4", batch="b2"),  # novel
            from_verified_code(other.replace("title", "title "), parent_id="p5", batch="b2"),  # near copy within batch
        ]
    )
    result = library.add_batch(batch2, batch="b2")
    reasons = result.outcomes["reject_reason"].to_list()
    assert reasons[0] == f"duplicate: {original}"
    assert reasons[1].startswith(f"near_duplicate: {original} (cos ")
    assert reasons[2] is None
    novel_id = result.outcomes["module_id"][2]
    assert reasons[3].startswith(f"near_duplicate: {novel_id} (cos ")
    assert result.snapshot.added == 1 and len(library) == 2
    assert result.outcomes["nearest_similarity"][1] >= 0.95

    strict = ModuleLibrary(tmp_path / "strict", HashingEmbedder(), novelty_threshold=1.01)
    strict.add_batch(from_verified_code(base, parent_id="p1", batch="b1"), batch="b1")
    assert strict.add_batch(from_verified_code(spaced, parent_id="p3", batch="b2"), batch="b2").snapshot.added == 1


def test_recommitting_a_batch_is_idempotent(tmp_path: Path) -> None:
    library = ModuleLibrary(tmp_path, HashingEmbedder())
    candidates = from_seed_rows(SEED_ROWS)
    first = library.add_batch(candidates, batch="b1")
    again = library.add_batch(candidates, batch="b1")
    assert again.reused and again.snapshot == first.snapshot
    assert again.outcomes.equals(first.outcomes)
    assert len(library.snapshots()) == 2  # empty + v0001


def test_a_library_refuses_a_different_embedding_model(tmp_path: Path) -> None:
    ModuleLibrary(tmp_path, HashingEmbedder(dim=256)).add_batch(from_seed_rows(SEED_ROWS), batch="b1")
    with pytest.raises(ValueError, match="refusing to mix"):
        ModuleLibrary(tmp_path, HashingEmbedder(dim=128))


def test_another_process_commit_is_seen_and_snapshots_stay_ordered(tmp_path: Path) -> None:
    writer_a = ModuleLibrary(tmp_path, HashingEmbedder(), novelty_threshold=1.01)
    writer_b = ModuleLibrary(tmp_path, HashingEmbedder(), novelty_threshold=1.01)
    a = writer_a.add_batch(from_verified_code(_functions(5, "a"), parent_id="pa", batch="ba"), batch="ba")
    b = writer_b.add_batch(from_verified_code(_functions(5, "b"), parent_id="pb", batch="bb"), batch="bb")
    assert b.snapshot.seq == a.snapshot.seq + 1 and b.snapshot.entries == 10
    assert [s.snapshot_id for s in writer_a.snapshots()] == [s.snapshot_id for s in writer_b.snapshots()]
    assert writer_a.entries()["position"].to_list() == list(range(10))


def test_library_on_the_ann_path_keeps_snapshot_boundaries(tmp_path: Path) -> None:
    library = ModuleLibrary(tmp_path, HashingEmbedder(dim=64), exact_below=300, novelty_threshold=1.01)
    snaps = []
    for batch in range(4):
        code = _functions(150, f"batch{batch}")
        snaps.append(library.add_batch(from_verified_code(code, parent_id=f"p{batch}", batch=f"b{batch}"), batch=f"b{batch}").snapshot)
    assert library.index.uses_ann and len(library) == 600
    queries = [f"batch{b} alpha bravo value" for b in range(4)]
    for snap in snaps:
        hits = library.retrieve(queries, k=5, snapshot=snap.snapshot_id)
        assert hits["position"].max() < snap.entries
        assert hits.height == 4 * 5
    reopened = ModuleLibrary(tmp_path, HashingEmbedder(dim=64))
    assert reopened.index.uses_ann
    stored = reopened.vectors(np.array([5, 450, 2]))
    np.testing.assert_allclose(stored, library.vectors(np.array([5, 450, 2])))
    assert json.loads((tmp_path / "library.json").read_text())["snapshots"][-1]["entries"] == 600


@pytest.mark.slow
def test_batch_two_retrieves_a_module_harvested_from_batch_one_with_the_real_model(tmp_path: Path) -> None:
    library = ModuleLibrary(tmp_path / "module_library", SentenceEmbedder())
    seeds = library.add_batch(from_seed_rows(SEED_ROWS), batch="batch-1-seeds")
    harvested = library.add_batch(
        from_verified_code(VERIFIED_CODE, parent_id="pair-1", batch="batch-1"), batch="batch-1"
    )
    assert harvested.snapshot.added == 3  # _words, word_counts, fetch_all
    # batch 2 starts: it retrieves from the latest snapshot committed before it
    seen = library.latest_snapshot().snapshot_id
    decomposed = pl.DataFrame(
        {
            "name": ["tally_words", "rolling_mean"],
            "signature": ["def tally_words(text: str) -> dict[str, int]", "def rolling_mean(values: list[float], window: int) -> list[float]"],
            "description": ["Count how often each word occurs in a piece of text.", "Mean of each sliding window over the values."],
        }
    )
    hits = library.retrieve(decomposed, k=1, snapshot=seen)
    assert hits["name"].to_list() == ["word_counts", "moving_average"]
    assert hits["added_in_snapshot"].to_list() == [harvested.snapshot.snapshot_id, seeds.snapshot.snapshot_id]
    assert set(hits["library_snapshot"]) == {seen}
    # a rerun of batch 2 after the library grew still sees the recorded snapshot
    library.add_batch(
        from_verified_code("def count_tokens(text):\n    return len(text.split())\n", parent_id="pair-2", batch="batch-2"),
        batch="batch-2",
    )
    assert library.retrieve(decomposed, k=3, snapshot=seen).equals(library.retrieve(decomposed, k=3, snapshot=seen))
    assert "count_tokens" not in library.retrieve(decomposed, k=5, snapshot=seen)["name"].to_list()
    assert "count_tokens" in library.retrieve(decomposed, k=5)["name"].to_list()


def test_retrieve_for_queries_gives_the_evolution_stage_layout(tmp_path: Path) -> None:
    library = ModuleLibrary(tmp_path, HashingEmbedder())
    queries = pl.DataFrame({"query_id": ["m1", "m2"], "instruction_id": ["i1", "i1"], "text": ["parse an iso date", "moving average window"]})
    before = library.retrieve_for_queries(queries, k=2)
    assert before["retrieved"].to_list() == [[], []] and set(before["library_snapshot"]) == {EMPTY_SNAPSHOT}
    added = library.add_batch(from_seed_rows(SEED_ROWS), batch="b1")
    after = library.retrieve_for_queries(queries, k=2)
    assert after.columns == ["query_id", "retrieved", "library_snapshot"]
    assert after["query_id"].to_list() == ["m1", "m2"]
    assert set(after["library_snapshot"]) == {added.snapshot.snapshot_id}
    first = after["retrieved"][0].to_list()
    assert [e["name"] for e in first] == ["parse_iso", "moving_average"]
    assert first[0]["similarity"] >= first[1]["similarity"]
    assert set(first[0]) == {"entry_id", "similarity", "name", "signature", "description", "code"}
    assert first[0]["entry_id"] == library.entries().filter(pl.col("name") == "parse_iso")["module_id"][0]
    only_close = library.retrieve_for_queries(queries, k=2, min_similarity=first[0]["similarity"])
    assert first[1]["similarity"] < first[0]["similarity"]
    assert [e["name"] for e in only_close["retrieved"][0].to_list()] == ["parse_iso"]


def test_a_commit_interrupted_before_its_manifest_is_invisible_and_retried_cleanly(tmp_path: Path) -> None:
    library = ModuleLibrary(tmp_path, HashingEmbedder(), novelty_threshold=1.01)
    first = library.add_batch(from_verified_code(_functions(4, "one"), parent_id="p1", batch="b1"), batch="b1")
    committed = (tmp_path / "library.json").read_text()
    second = library.add_batch(from_verified_code(_functions(3, "two"), parent_id="p2", batch="b2"), batch="b2")
    # simulate a crash after the data files and the index were written but before the manifest
    (tmp_path / "library.json").write_text(committed)

    reopened = ModuleLibrary(tmp_path, HashingEmbedder(), novelty_threshold=1.01)
    assert reopened.latest_snapshot() == first.snapshot and len(reopened.index) == 4
    assert reopened.retrieve(["two alpha"], k=10)["position"].max() < 4
    retried = reopened.add_batch(from_verified_code(_functions(3, "two"), parent_id="p2", batch="b2"), batch="b2")
    assert retried.snapshot == second.snapshot and not retried.reused
    third = reopened.add_batch(from_verified_code(_functions(2, "three"), parent_id="p3", batch="b3"), batch="b3")
    assert third.snapshot.entries == 9
    again = ModuleLibrary(tmp_path, HashingEmbedder())
    assert again.entries()["position"].to_list() == list(range(9))
    names = again.entries()["name"].to_list()
    hits = again.retrieve([names[7]], k=1)  # the vector at each position belongs to that entry
    assert hits["name"].to_list() == [names[7]]
