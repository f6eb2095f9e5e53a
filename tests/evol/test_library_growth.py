"""The module library loop with real parts: a module harvested from batch 1's passing response
(run in real bubblewrap) is retrieved by batch 2's evolution (real MiniLM embeddings, real
Gemma teacher), batch 2 never retrieves its own code, and the evolved row records the snapshot
and the module ids it saw."""

import polars as pl
import pytest

from amr_dagster.evol.config import EvolConfig
from amr_dagster.schemas import MODULE_COLUMNS
from amr_dagster.evol.module_library import ModuleLibrary
from amr_dagster.generation.execution import execute_responses
from amr_dagster.outcomes import with_status
from amr_dagster.sandbox.base import Limits
from amr_dagster.evol.stages import batch_candidates, retrieval_snapshot, run_evolution

BATCH1_CODE = '''def moving_average(values: list[float], window: int) -> list[float]:
    """Average of each run of `window` consecutive values, in order."""
    return [sum(values[i:i + window]) / window for i in range(len(values) - window + 1)]
'''
BATCH1_TESTS = "assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.5, 2.5, 3.5]\nassert moving_average([5.0], 1) == [5.0]\n"

BATCH2_INSTRUCTION = "Write a function smooth(series, k) that returns the moving average of a list of numbers over windows of k values."
BATCH2_CODE = '''def smooth(series, k):
    out = []
    for i in range(len(series) - k + 1):
        out.append(sum(series[i:i + k]) / k)
    return out
'''
BATCH2_TESTS = "assert smooth([2, 4, 6], 2) == [3.0, 5.0]\n"


def _samples(instruction_id: str, instruction: str, code: str, tests: str) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "id": [f"{instruction_id}-s0"],
            "parent_id": [instruction_id],
            "seed_id": ["seed"],
            "instruction": [instruction],
            "response": [f"Here is the solution.\n```python\n{code}```"],
            "code": [code],
            "tests": [tests],
        }
    )
    return with_status(frame, [None])


@pytest.fixture(scope="module")
def sandbox():
    from amr_dagster.sandbox.auto import open_sandbox

    box = open_sandbox("local", workers=1)
    yield box
    box.close()


@pytest.fixture(scope="module")
def teacher():
    from amr_dagster.llm.cache import MemoryCache
    from amr_dagster.llm.cached import CachedEngine
    from amr_dagster.llm.registry import EngineSpec, shared_engine

    return CachedEngine(shared_engine(EngineSpec(backend="llama_cpp", n_ctx=4096)), MemoryCache())


def test_batch_two_retrieves_a_module_harvested_from_batch_one(tmp_path, sandbox, teacher):
    from amr_dagster.evol.embeddings import SentenceEmbedder

    library = ModuleLibrary(tmp_path / "library", SentenceEmbedder())
    limits = Limits(wall_s=10)

    # Batch 1: a passing direct response, verified in the sandbox, harvested into the library.
    executed1, _ = execute_responses(_samples("inst1", "Compute moving averages.", BATCH1_CODE, BATCH1_TESTS), sandbox, limits)
    assert executed1["sandbox_status"].to_list() == ["passed"]
    candidates = batch_candidates(pl.DataFrame(), executed1, "batch-1")
    harvested = candidates.filter(pl.col("status") == "accepted")
    assert harvested["name"].to_list() == ["moving_average"] and harvested["source"].to_list() == ["harvested"]
    first = library.add_batch(candidates, batch="batch-1")

    # Batch 2 (executed, then offered to the library itself) evolves against its own snapshot,
    # which holds batch 1's module and its own harvested `smooth`, which it must not retrieve.
    executed2, _ = execute_responses(_samples("inst2", BATCH2_INSTRUCTION, BATCH2_CODE, BATCH2_TESTS), sandbox, limits)
    second = library.add_batch(batch_candidates(pl.DataFrame(), executed2, "batch-2"), batch="batch-2")
    own_module = second.outcomes.filter(pl.col("status") == "accepted")["module_id"][0]
    assert retrieval_snapshot(library, "batch-2") == second.snapshot.snapshot_id

    config = EvolConfig(use_decomposition=False, evolution_max_tokens=48, top_k=3)
    no_modules = with_status(pl.DataFrame(schema=MODULE_COLUMNS), [])
    evolved, stats, _ = run_evolution(
        executed=executed2, modules=no_modules, library=library, batch="batch-2", engine=teacher, sandbox=sandbox, limits=limits, config=config,
    )
    row = evolved.row(0, named=True)
    assert row["library_snapshot"] == second.snapshot.snapshot_id
    assert harvested["module_id"][0] in row["retrieved_module_ids"]
    assert own_module not in row["retrieved_module_ids"]
    assert row["retrieved_similarities"][0] > 0.3
    # Whatever the tiny teacher wrote, the row is accounted for: executed, or rejected with a reason.
    assert row["status"] == "accepted" or row["reject_reason"]
