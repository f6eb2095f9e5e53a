"""Shared state with no shared disk: the commit log (``SharedFolder``) and, on top of it, global
near-dedup and the module library committed by workers that share only S3.

Workers here are separate processes with private cache folders, started together behind a
barrier so their transactions really overlap; the server is real SeaweedFS (and a local folder
for the same protocol without a server)."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import polars as pl
import pytest

from amr_dagster.storage.objectstore import LocalObjectStore, open_store
from amr_dagster.storage.shared_folder import CommitConflict, SharedFolder
from amr_dagster.storage.shared_state import MINHASH, MODULE_LIBRARY, SharedState


@pytest.fixture(params=["local", "s3"])
def shared_root(request, tmp_path) -> str:
    return str(tmp_path / "shared") if request.param == "local" else request.getfixturevalue("s3_root")


def test_second_committer_redoes_its_work_on_the_first_ones_state(shared_root, tmp_path) -> None:
    store = open_store(shared_root).child("counter")
    a, b = SharedFolder(store, tmp_path / "a"), SharedFolder(store, tmp_path / "b")

    def append(line: str):
        def work(folder: Path) -> list[str]:
            path = folder / "lines.txt"
            lines = path.read_text().splitlines() if path.exists() else []
            path.write_text("\n".join([*lines, line]))
            return lines
        return work

    assert a.update(append("a1")) == []
    # B starts from the state after a1, A commits a2 meanwhile: B's first commit must fail,
    # its copy goes back to the committed state, and the redo sees a2.
    with pytest.raises(CommitConflict):
        with b.transaction() as folder:
            append("b1")(folder)
            a.update(append("a2"))
    assert not (tmp_path / "b" / "lines.txt").exists() or (tmp_path / "b" / "lines.txt").read_text() == "a1"
    assert b.update(append("b1")) == ["a1", "a2"]
    assert (a.checkout() / "lines.txt").read_text().splitlines() == ["a1", "a2", "b1"]
    assert a.entries() == 3

    # A failed attempt leaves no trace; an unchanged folder commits nothing.
    with pytest.raises(ZeroDivisionError):
        with a.transaction() as folder:
            (folder / "lines.txt").write_text("garbage")
            (folder / "stray.txt").write_text("x")
            1 / 0
    assert (tmp_path / "a" / "lines.txt").read_text().splitlines() == ["a1", "a2", "b1"]
    assert not (tmp_path / "a" / "stray.txt").exists()
    a.update(lambda folder: None)
    assert a.entries() == 3


def _committer(root: str, cache: str, worker: int, barrier, rounds: int, out) -> None:
    folder = SharedFolder(open_store(root).child("counter"), cache)
    barrier.wait()
    for i in range(rounds):
        def work(path: Path, i=i) -> None:
            target = path / "lines.txt"
            lines = target.read_text().splitlines() if target.exists() else []
            target.write_text("\n".join([*lines, f"w{worker}-{i}"]))
        folder.update(work, attempts=200)
    out.put(worker)


def _race(target, root: str, tmp_path: Path, tags: list, *args, timeout: float = 400) -> list:
    """Run ``target(root, private cache, tag, barrier, *args, queue)`` in one spawned process
    per tag, released together by a barrier; returns what each put on the queue."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(len(tags)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(root, str(tmp_path / f"w{tag}"), tag, barrier, *args, out)) for tag in tags]
    for p in procs:
        p.start()
    results = [out.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return results


def test_concurrent_committers_lose_no_update(shared_root, tmp_path) -> None:
    _race(_committer, shared_root, tmp_path, [0, 1, 2], 6)
    lines = (SharedFolder(open_store(shared_root).child("counter"), tmp_path / "reader").checkout() / "lines.txt").read_text().splitlines()
    assert sorted(lines) == sorted(f"w{w}-{i}" for w in range(3) for i in range(6))
    for w in range(3):  # each worker's lines in its own order
        mine = [line for line in lines if line.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i}" for i in range(6)]


# ------------------------------------------------------------------ global near-dedup


def _body(name: str, extra: str = "") -> str:
    return (
        f"def {name}(values, factor):\n"
        f'    """Multiply every value of the list by factor and return the new list in order."""\n'
        f"    result = []\n    for value in values:\n        result.append(value * factor){extra}\n    return result\n"
    )


SHARED = [
    _body("scale_values"),
    'def count_vowels(text):\n    """Count how many characters of text are vowels, ignoring case entirely."""\n'
    "    total = 0\n    for ch in text.lower():\n        if ch in 'aeiou':\n            total += 1\n    return total\n",
    'def clamp_number(value, low, high):\n    """Return value limited to the closed interval from low to high inclusive."""\n'
    "    if value < low:\n        return low\n    if value > high:\n        return high\n    return value\n",
    'def merge_sorted(left, right):\n    """Merge two already sorted lists into one sorted list without calling sort."""\n'
    "    out, i, j = [], 0, 0\n    while i < len(left) and j < len(right):\n        if left[i] <= right[j]:\n"
    "            out.append(left[i])\n            i += 1\n        else:\n            out.append(right[j])\n"
    "            j += 1\n    return out + left[i:] + right[j:]\n",
]


def _batch(tag: str) -> pl.DataFrame:
    own = [f"def {tag}_only_{i}(text):\n    '''Count letters {tag} {i} in text: {' '.join([tag] * (i + 3))}.'''\n    return len(text) * {i + 7}\n" for i in range(3)]
    # The other batch holds the shared functions with a comment added: near, not exact, copies.
    shared = [s if tag == "a" else s + "# copied\n" for s in SHARED]
    code = own + shared
    return pl.DataFrame({"id": [f"{tag}-{i}" for i in range(len(code))], "code": code})


def _dedup_worker(root: str, cache: str, tag: str, barrier, out) -> None:
    from amr_dagster.seeds.dedup import DedupConfig, SignatureStore, dedup_batch

    os.environ["AMR_CACHE_DIR"] = cache
    state = SharedState(root)
    frame = _batch(tag)
    barrier.wait()
    result, stats = state.update(MINHASH, lambda folder: dedup_batch(frame, f"batch-{tag}", SignatureStore(folder), DedupConfig()))
    out.put((tag, result.select("id", "status", "duplicate_of").rows(), stats["ledger_position"]))


def test_two_workers_dedup_overlapping_batches_at_once(shared_root, tmp_path) -> None:
    results = {
        tag: ({r[0]: (r[1], r[2]) for r in rows}, position)
        for tag, rows, position in _race(_dedup_worker, shared_root, tmp_path, ["a", "b"])
    }
    first = min(results, key=lambda t: results[t][1])
    second = "b" if first == "a" else "a"
    assert sorted(results[t][1] for t in "ab") == [0, 1]
    n_own = 3
    for i in range(len(SHARED)):
        kept, rejected = results[first][0][f"{first}-{n_own + i}"], results[second][0][f"{second}-{n_own + i}"]
        # The first committer keeps the shared function; the other rejects it naming that row.
        assert kept == ("accepted", None)
        assert rejected == ("rejected", f"{first}-{n_own + i}")
    for tag in "ab":  # nothing else is touched, and every row has one outcome
        rows = results[tag][0]
        assert len(rows) == n_own + len(SHARED)
        assert all(rows[f"{tag}-{i}"] == ("accepted", None) for i in range(n_own))

    # A third machine sees the same ledger and re-running a batch gives the same answer.
    from amr_dagster.seeds.dedup import DedupConfig, SignatureStore, dedup_batch

    os.environ["AMR_CACHE_DIR"] = str(tmp_path / "third")
    state = SharedState(shared_root)
    assert SignatureStore(state.read(MINHASH)).batches() == [f"batch-{first}", f"batch-{second}"]
    again, _ = state.update(MINHASH, lambda f: dedup_batch(_batch(second), f"batch-{second}", SignatureStore(f), DedupConfig()))
    assert {r[0]: (r[1], r[2]) for r in again.select("id", "status", "duplicate_of").rows()} == results[second][0]


# ------------------------------------------------------------------ the module library


def _library_worker(root: str, cache: str, tag: str, barrier, out) -> None:
    from amr_dagster.evol.embeddings import SentenceEmbedder
    from amr_dagster.evol.candidates import from_verified_code
    from amr_dagster.evol.module_library import ModuleLibrary

    os.environ["AMR_CACHE_DIR"] = cache
    embedder = SentenceEmbedder()
    code = "\n\n".join([_body("shared_scale"), f"def {tag}_greeting(name):\n    return 'hello {tag} ' * 3 + name.upper()[::-1]\n"])
    candidates = from_verified_code(code, parent_id=f"{tag}-parent", batch=f"batch-{tag}")
    state = SharedState(root)
    barrier.wait()
    result = state.update(MODULE_LIBRARY, lambda folder: ModuleLibrary(folder, embedder).add_batch(candidates, batch=f"batch-{tag}"))
    out.put((tag, result.snapshot.seq, result.outcomes.select("name", "status", "reject_reason").rows()))


def test_two_workers_grow_the_module_library_in_one_order(s3_root, tmp_path) -> None:
    results = {
        tag: (seq, {name: (status, reason) for name, status, reason in rows})
        for tag, seq, rows in _race(_library_worker, s3_root, tmp_path, ["a", "b"])
    }
    assert sorted(seq for seq, _ in results.values()) == [1, 2]
    first = min(results, key=lambda t: results[t][0])
    second = "b" if first == "a" else "a"
    assert results[first][1]["shared_scale"] == ("accepted", None)
    status, reason = results[second][1]["shared_scale"]
    assert status == "rejected" and reason.startswith("duplicate: ")
    assert results[second][1][f"{second}_greeting"] == ("accepted", None)

    from amr_dagster.evol.embeddings import SentenceEmbedder
    from amr_dagster.evol.module_library import ModuleLibrary

    os.environ["AMR_CACHE_DIR"] = str(tmp_path / "reader")
    library = ModuleLibrary(SharedState(s3_root).read(MODULE_LIBRARY), SentenceEmbedder())
    snapshots = library.snapshots()
    assert [s.batch for s in snapshots[1:]] == [f"batch-{first}", f"batch-{second}"]
    names = library.entries()["name"].to_list()
    assert sorted(names) == sorted(["shared_scale", "a_greeting", "b_greeting"])  # kept exactly once
