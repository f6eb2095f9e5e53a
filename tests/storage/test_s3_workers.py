"""Workers that share no disk: separate ``amr-dagster run`` processes, each with its own HOME,
working directory and machine cache, sharing only S3 (SeaweedFS) and a real OpenAI-compatible
server (llama-cpp-python's, serving the embedded Gemma model).

Two workers materialize two overlapping seed batches (read from S3) at the same time: each
near-duplicate both contain is kept exactly once, by the batch whose dedup committed first, and
rejected by the other naming the kept row; every frame lands in S3 and none on a worker's disk;
every stage accounts for its input rows. A third worker with empty folders then reruns one batch:
the server receives zero requests (every call comes from the S3 LLM cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from amr_dagster.storage.objectstore import open_store
from amr_dagster.outcomes import summarize
from amr_dagster.seeds.batches import BatchRegistry
from amr_dagster.storage.frames import FrameStore
from tests.llama_server import generation_requests, llama_server_process
from tests.dagster.test_dagster_seed_stages import FUNCS_A, FUNCS_B

STAGES = ["seed_functions", "filtered_seeds", "deduped_seeds", "seed_concepts", "instructions"]
COUNT_VOWELS = "def count_vowels" + FUNCS_A.split("def count_vowels")[1].split("def no_docstring")[0]
REVERSE_WORDS = '''

def reverse_words(text: str) -> str:
    """Return the words of text in reverse order, joined by single spaces between them."""
    words = text.split()
    words.reverse()
    return " ".join(words)
'''
# Batch A: scale_values, count_vowels, reverse_words (and two rows the filters reject).
BATCH_A = FUNCS_A + REVERSE_WORDS
# Batch B: scale_values with a comment (near copy), count_vowels with a trailing comment, clamp_number.
BATCH_B = FUNCS_B + "\n\n" + COUNT_VOWELS.rstrip() + "  # copied from batch a\n"
SHARED = ("scale_values", "count_vowels")


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    with llama_server_process(log, n_threads=2) as base:
        yield base, log


def _worker(name: str, tmp_path: Path, s3_env: dict[str, str], data: str, seeds: str, base_url: str) -> subprocess.Popen:
    """One worker machine: private HOME, cwd and caches; shares only S3 and the LLM server."""
    home = tmp_path / name
    (home / "cwd").mkdir(parents=True)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HOME": str(home),
        "AMR_CACHE_DIR": str(home / ".cache" / "amr-dagster"),
        **s3_env,
        "AMR_DATA_DIR": data,
        "AMR_LLM_BASE_URL": base_url,
        "AMR_LLM_MODEL": "gemma",
        "AMR_CONCEPTS_MAX_TOKENS": "24",
        "AMR_INSTRUCTION_MAX_TOKENS": "48",
    }
    command = [
        str(Path(sys.executable).parent / "amr-dagster"), "run", "--seeds", seeds,
        "--select", ",".join(STAGES), "--no-typecheck", "--no-judge", "--llm-backend", "openai",
    ]
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(command, cwd=home / "cwd", env=env, stdout=log, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, tmp_path: Path, name: str) -> str:
    proc.wait(timeout=1500)
    out = (tmp_path / f"{name}.log").read_text()
    assert proc.returncode == 0, out[-6000:]
    assert "CHECK FAILED" not in out, out
    return out


def _local_files(home: Path) -> list[str]:
    """Parquet or JSON a worker left on its own disk outside its machine cache."""
    cache = home / ".cache"
    return [
        str(p) for p in home.rglob("*")
        if p.is_file() and p.suffix in (".parquet", ".json", ".jsonl") and cache not in p.parents and "dagster" not in p.parts
    ]


@pytest.mark.llm
@pytest.mark.slow
def test_workers_sharing_only_s3(s3_root, s3_server, llm_server, tmp_path) -> None:
    base_url, server_log = llm_server
    seeds = open_store(s3_root).child("seeds")
    seeds.put("batch_a/mod_a.py", BATCH_A.encode())
    seeds.put("batch_b/mod_b.py", BATCH_B.encode())
    data = f"{s3_root}/data"
    env = s3_server.env()

    workers = {n: _worker(n, tmp_path, env, data, seeds.uri(f"batch_{n[-1]}"), base_url) for n in ("worker_a", "worker_b")}
    outputs = {n: _finish(p, tmp_path, n) for n, p in workers.items()}
    assert generation_requests(server_log) > 0

    frames = FrameStore(data)
    registry = BatchRegistry(data)
    keys = {registry.get(k).location.rsplit("/", 1)[-1]: k for k in registry.keys()}
    assert set(keys) == {"batch_a", "batch_b"}

    # Every frame is in S3; no worker wrote data to its own disk.
    for stage in STAGES:
        for key in keys.values():
            assert frames.exists(stage, key), (stage, key)
    for name in workers:
        assert _local_files(tmp_path / name) == [], name
        assert not (tmp_path / name / "cwd" / ".amr" / "data").exists()

    # Each shared near-duplicate is kept exactly once, by the batch whose dedup committed first.
    deduped = {batch: frames.read("deduped_seeds", key) for batch, key in keys.items()}
    from amr_dagster.seeds.dedup import SignatureStore
    from amr_dagster.storage.shared_state import MINHASH, SharedState

    os.environ.setdefault("AMR_CACHE_DIR", str(tmp_path / "inspector"))
    ledger = SignatureStore(SharedState(data).read(MINHASH)).batches()
    first, second = [b for k in ledger for b, kk in keys.items() if kk == k]
    for name in SHARED:
        kept = deduped[first].filter(pl.col("name") == name)
        copy = deduped[second].filter(pl.col("name") == name)
        assert kept["status"].to_list() == ["accepted"], (name, kept)
        assert copy["status"].to_list() == ["rejected"] and copy["duplicate_of"].to_list() == kept["id"].to_list(), (name, copy)
    assert deduped["batch_b"].filter(pl.col("name") == "clamp_number")["status"].to_list() == ["accepted"]
    assert deduped["batch_a"].filter(pl.col("name") == "reverse_words")["status"].to_list() == ["accepted"]

    # Accounting: every stage's rows are accepted + rejected; each stage judges exactly the rows
    # its upstream accepted.
    for key in keys.values():
        upstream_accepted = None
        for stage in STAGES:
            counts = summarize(frames.read(stage, key))
            assert counts["rows"] == counts["accepted"] + counts["rejected"], (stage, counts)
            if stage in ("filtered_seeds", "deduped_seeds") and upstream_accepted is not None:
                assert counts["rows"] == upstream_accepted, (stage, counts, upstream_accepted)
            upstream_accepted = counts["accepted"]

    # A third machine with empty folders reruns the batch that kept the shared seeds (the one
    # with the most LLM work): every call comes from the S3 cache, the server sees none.
    concepts = frames.read("seed_concepts", keys[first])
    assert concepts.height >= 3  # the LLM was asked about each of its kept seeds
    before = generation_requests(server_log)
    third = _worker("worker_c", tmp_path, env, data, seeds.uri(first), base_url)
    out = _finish(third, tmp_path, "worker_c")
    assert generation_requests(server_log) == before, out[-3000:]
    again = frames.read("seed_concepts", keys[first])
    same = ["id", "parent_id", "raw_output", "concepts", "status", "reject_reason"]
    assert again.select(same).equals(concepts.select(same))
    assert again["cached"].to_list() == [True] * again.height
    assert _local_files(tmp_path / "worker_c") == []
    assert all("succeeded" in o for o in [*outputs.values(), out])
