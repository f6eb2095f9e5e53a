"""The object-store layer and what sits on it, on a local folder and on real S3 (SeaweedFS):
the same contract for both, frames and the batch registry round-trip, seeds are listed and
fetched from an S3 prefix, and the sensor turns S3 objects into partitions (ETag as stamp)."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest

from amr_dagster.storage.objectstore import LocalObjectStore, ObjectStore, open_store
from amr_dagster.seeds.batches import BatchRegistry
from amr_dagster.storage.frames import FrameStore

GOOD = 'def double(x: int) -> int:\n    """Return twice the value of x."""\n    return 2 * x\n'


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "root")
    return open_store(request.getfixturevalue("s3_root"))


def test_object_store_contract(store: ObjectStore) -> None:
    assert store.get("a/x.json") is None and not store.exists("a/x.json")
    store.put("a/x.json", b"1")
    store.put("a/b/y.bin", b"22")
    store.put("c.txt", b"3")
    assert store.get("a/x.json") == b"1" and store.exists("a/b/y.bin")
    assert store.list("a") == ["a/b/y.bin", "a/x.json"]
    assert store.list() == ["a/b/y.bin", "a/x.json", "c.txt"]
    assert store.list("a", start_after="a/b/y.bin") == ["a/x.json"]
    assert store.list("nothing") == []
    assert dict(store.stamps("a")).keys() == {"a/b/y.bin", "a/x.json"}

    # Create-if-absent: exactly one of two writers of a new key wins, the loser changes nothing.
    assert store.create("log/1", b"first") is True
    assert store.create("log/1", b"second") is False
    assert store.get("log/1") == b"first"

    # Replace-if-unchanged: a stale ETag is refused.
    tag = store.etag("c.txt")
    assert tag is not None
    assert store.replace("c.txt", b"4", tag) is True
    assert store.replace("c.txt", b"5", tag) is False
    assert store.get("c.txt") == b"4"
    assert store.replace("new.txt", b"6", None) is True and store.replace("new.txt", b"7", None) is False

    child = store.child("a")
    assert child.get("x.json") == b"1" and child.list() == ["b/y.bin", "x.json"]
    store.delete("c.txt")
    assert store.get("c.txt") is None


def test_frames_and_registry_round_trip(store: ObjectStore, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AMR_CACHE_DIR", str(tmp_path / "cache"))
    frames = FrameStore(store)
    frame = pl.DataFrame({"id": ["a", "b"], "n": [1, 2]})
    frames.write("stage", "batch-1", frame)
    frames.write("stage", "batch-2", frame.head(1))
    assert frames.read("stage", "batch-1").equals(frame)
    assert frames.partitions("stage") == ["batch-1", "batch-2"]
    assert [k for k, _ in frames.iter_partitions("stage")] == ["batch-1", "batch-2"]
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        frames.read("stage", "missing")

    seed = tmp_path / "one.py"
    seed.write_text(GOOD)
    registry = BatchRegistry(store)
    batch = registry.register(seed)
    assert registry.keys() == [batch.key] and registry.resolve(batch.key) == seed.resolve()
    seed.write_text(GOOD.replace("twice", "two times"))
    with pytest.raises(ValueError, match="changed since it was registered"):
        registry.resolve(batch.key)


def test_seeds_in_s3_register_with_the_same_key_as_on_disk(s3_root, tmp_path, monkeypatch) -> None:
    from amr_dagster.seeds.remote import remote_entries

    monkeypatch.setenv("AMR_CACHE_DIR", str(tmp_path / "cache"))
    seeds = open_store(s3_root).child("seeds")
    seeds.put("one.py", GOOD.encode())
    seeds.put("pkg/m.py", GOOD.encode())
    seeds.put("pkg/sub/n.py", GOOD.replace("double", "twice").encode())
    seeds.put("notes.txt", b"not a seed")
    entries = {e.name: e for e in remote_entries(seeds)}
    assert set(entries) == {"one.py", "pkg"}

    local = tmp_path / "local"
    (local / "pkg" / "sub").mkdir(parents=True)
    (local / "one.py").write_text(GOOD)
    (local / "pkg" / "m.py").write_text(GOOD)
    (local / "pkg" / "sub" / "n.py").write_text(GOOD.replace("double", "twice"))
    registry = BatchRegistry(tmp_path / "data")
    for name in ("one.py", "pkg"):
        remote = registry.register(entries[name].uri)
        assert remote.key == registry.register(local / name).key  # name + content hash, wherever it lives
        assert registry.get(remote.key).location == str(local / name)  # last registration wins
    remote = registry.register(entries["pkg"].uri)
    fetched = registry.resolve(remote.key)
    assert sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*.py")) == ["m.py", "sub/n.py"]

    # An edit in S3 after registration is refused under the old key.
    seeds.put("pkg/m.py", GOOD.replace("twice", "three times").encode())
    with pytest.raises(ValueError, match="changed since it was registered"):
        registry.resolve(remote.key)


def test_sensor_watches_an_s3_prefix(amr_storage, s3_root, monkeypatch) -> None:
    from resources.data_root import DataRoot
    from resources.seed_location import SeedLocation
    from sensors.seed_sensor import seed_file_sensor

    seeds_url = f"{s3_root}/incoming"
    seeds = open_store(seeds_url)
    instance = dg.DagsterInstance.get()

    def tick(cursor=None):
        resources = {"seed_location": SeedLocation(path=seeds_url), "data_root": DataRoot()}
        return seed_file_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))

    assert not tick().run_requests
    seeds.put("one.py", GOOD.encode())
    first = tick()
    (request,) = first.run_requests
    assert request.partition_key.startswith("one-")
    assert json.loads(first.cursor)["one.py"][0] == seeds.etag("one.py")  # the ETag is the stamp

    assert not tick(first.cursor).run_requests  # unchanged
    seeds.put("one.py", GOOD.encode())  # rewritten, same content: same ETag, same batch
    same = tick(first.cursor)
    assert not same.run_requests

    seeds.put("one.py", GOOD.replace("twice", "two times").encode())
    changed = tick(same.cursor)
    (request_2,) = changed.run_requests
    assert request_2.partition_key.startswith("one-") and request_2.partition_key != request.partition_key
    assert BatchRegistry().get(request_2.partition_key).location == f"{seeds_url}/one.py"


def test_llm_cache_in_s3_is_shared_between_machines(s3_root, tmp_path) -> None:
    """What one machine finished, another (its own empty SQLite) reads from S3 and keeps."""
    from amr_dagster.llm.base import Completion
    from amr_dagster.llm.cache import SQLiteCache
    from amr_dagster.llm.shared_cache import ObjectStoreCache

    store = open_store(f"{s3_root}/llm_cache")
    first = ObjectStoreCache(store, SQLiteCache(tmp_path / "one.sqlite"))
    done = Completion(text="def f(): pass", finish_reason="stop", prompt_tokens=7, completion_tokens=5, sample_index=0)
    first.put("k1", "model-x", done)
    assert first.count() == 1

    local = SQLiteCache(tmp_path / "two.sqlite")
    second = ObjectStoreCache(store, local)
    found = second.get_many(["k1", "k2"])
    assert set(found) == {"k1"} and found["k1"].text == done.text and found["k1"].cached
    assert (found["k1"].prompt_tokens, found["k1"].completion_tokens) == (7, 5)
    assert local.count() == 1  # kept locally: the next lookup needs no request
