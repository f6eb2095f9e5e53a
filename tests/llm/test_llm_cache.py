"""The persistent cache: several processes at once, and crash-resume with the real model.

Real-model tests here and in the other ``test_llm_*`` files run llama.cpp with one thread: on a
machine shared by many processes, llama.cpp's worker threads spin at barriers and two threads
on two busy cores run several times slower than one (measured: 36 s vs 4.7 s for 64 tokens).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from amr_dagster.llm.base import LLMRequest, SamplingParams
from amr_dagster.llm.cache import SQLiteCache
from amr_dagster.llm.cached import CachedEngine

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


WRITER = """
import sys
from amr_dagster.llm.base import Completion
from amr_dagster.llm.cache import SQLiteCache
cache = SQLiteCache(sys.argv[1])
who = sys.argv[2]
for i in range(150):
    cache.put(f"{who}-{i}", "m", Completion(f"text {who} {i}", "stop", 1, 1, 0))
print("ok")
"""


def test_several_processes_write_one_cache_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    SQLiteCache(path)  # create the file and WAL mode once
    workers = [_python(WRITER, str(path), f"w{i}") for i in range(3)]
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert out.strip() == "ok"
    cache = SQLiteCache(path)
    assert cache.count() == 450
    got = cache.get_many(["w0-0", "w2-149", "missing"])
    assert set(got) == {"w0-0", "w2-149"} and got["w2-149"].text == "text w2 149"


CRASH_WORKER = """
import sys
from amr_dagster.llm.base import LLMRequest, SamplingParams
from amr_dagster.llm.cache import SQLiteCache
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine
sys.path.insert(0, sys.argv[2])
from tests.llm.test_llm_cache import crash_workload
engine = CachedEngine(LlamaCppEngine(n_ctx=1024, n_threads=1), SQLiteCache(sys.argv[1]))
print("loaded", flush=True)
engine.generate(crash_workload())
print("finished", flush=True)
"""


def crash_workload() -> list[LLMRequest]:
    """Many short sampled calls: the worker is killed long before it gets through them."""
    return [
        LLMRequest(
            prompt=f"def function_number_{i}(x):\n    return x *",
            params=SamplingParams(max_tokens=8, temperature=0.8, seed=i),
            tag=f"row{i}",
        )
        for i in range(40)
    ]


@pytest.mark.llm
def test_killed_worker_loses_only_in_flight_calls(tmp_path: Path, shared_llama) -> None:
    path = tmp_path / "llm_cache.sqlite"
    SQLiteCache(path)
    worker = _python(CRASH_WORKER, str(path), str(ROOT))
    try:
        watcher = SQLiteCache(path)
        deadline = time.monotonic() + 600
        while watcher.count() < 4:
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else "worker died"
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == -signal.SIGKILL

    requests = crash_workload()
    finished = SQLiteCache(path).count()
    assert 4 <= finished < len(requests), "the kill must land mid-batch"

    # Resume in this process: every finished call is a hit, only the rest reach the model.
    engine = CachedEngine(shared_llama, SQLiteCache(path))
    out = engine.generate(requests)
    usage = engine.usage
    assert usage.cache_hits == finished
    assert usage.cache_misses == len(requests) - finished
    assert sum(c.cached for row in out for c in row) == finished
    assert SQLiteCache(path).count() == len(requests)

    # And a second resume repeats nothing at all.
    engine.reset_usage()
    again = engine.generate(requests)
    assert engine.usage.cache_misses == 0
    assert [c.text for row in again for c in row] == [c.text for row in out for c in row]


@pytest.fixture(scope="module")
def shared_llama():
    from amr_dagster.llm.registry import EngineSpec, shared_engine

    return shared_engine(EngineSpec(backend="llama_cpp", n_ctx=2048, n_threads=1))
