"""The whole code location against a committed snapshot (as dagster-open-platform tests its
definitions): asset keys, dependencies, partitions, code versions, kinds, owners, checks and
their blocking, retry policies, required resources, the job, sensor, schedule and resources.

A deliberate change: ``python -m tests.dagster.definitions_snapshot`` and commit the diff."""

from __future__ import annotations

import difflib

from tests.dagster.definitions_snapshot import SNAPSHOT, describe, render


def test_definitions_match_the_committed_snapshot():
    from amr_dagster.definitions import defs

    current, committed = render(defs), SNAPSHOT.read_text()
    diff = "".join(difflib.unified_diff(committed.splitlines(True), current.splitlines(True), "committed", "current"))
    assert current == committed, f"definitions changed; if intended, regenerate the snapshot:\n{diff}"


def test_every_stage_is_partitioned_checked_and_starts_from_seed_files():
    from amr_dagster.definitions import defs
    from amr_dagster.schemas import PARTITIONED_STAGES

    assets = describe(defs)["assets"]
    for stage in PARTITIONED_STAGES:
        asset = assets[stage]
        assert asset["partitions"] == "seed_batches" and asset["code_version"].startswith(f"{stage}.v")
        assert asset["checks"] == [{"name": "rows_accounted", "blocking": True}, {"name": "schema", "blocking": True}]
        assert asset["columns"], stage
    assert assets["seed_functions"]["deps"] == ["seed_files"] and not assets["seed_files"]["executable"]
    assert all(assets[a]["checks"] for a in ("module_library", "instruction_dataset"))
    llm_stages = [name for name, a in assets.items() if "llm" in a["kinds"]]
    assert llm_stages and all(assets[a]["retries"] > 0 for a in llm_stages)
