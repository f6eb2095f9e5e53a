"""The seed-arrival sensor and the backfill schedule against a real Dagster instance."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg

from sensors.backfill_schedule import BackfillItem, backfill_schedule, plan_backfill
from sensors.seed_sensor import seed_file_sensor

GOOD = 'def double(x: int) -> int:\n    """Return twice the value of x."""\n    return 2 * x\n'


def _tick(instance, cursor=None):
    from resources.data_root import DataRoot
    from resources.seed_location import SeedLocation

    resources = {"seed_location": SeedLocation(), "data_root": DataRoot()}
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return seed_file_sensor(ctx)


def test_sensor_new_changed_and_unchanged_files(amr_env):
    instance = dg.DagsterInstance.get()
    seeds = amr_env["seeds"]
    (seeds / "one.py").write_text(GOOD)
    (seeds / "notes.txt").write_text("not a seed")

    first = _tick(instance)
    assert [r.partition_key for r in first.run_requests] and len(first.run_requests) == 1
    key_one = first.run_requests[0].partition_key
    assert key_one.startswith("one-")
    assert first.dynamic_partitions_requests[0].partition_keys == [key_one]

    # Unchanged: nothing requested, cursor kept.
    second = _tick(instance, first.cursor)
    assert not second.run_requests
    assert json.loads(second.cursor) == json.loads(first.cursor)

    # Touched but same content: same batch, nothing requested.
    os.utime(seeds / "one.py", (time.time() + 5, time.time() + 5))
    touched = _tick(instance, second.cursor)
    assert not touched.run_requests

    # Changed content and a new folder batch: two new partitions, two runs.
    (seeds / "one.py").write_text(GOOD.replace("twice", "two times"))
    (seeds / "pkg").mkdir()
    (seeds / "pkg" / "m.py").write_text(GOOD)
    third = _tick(instance, touched.cursor)
    keys = sorted(r.partition_key for r in third.run_requests)
    assert len(keys) == 2 and key_one not in keys
    assert any(k.startswith("one-") for k in keys) and any(k.startswith("pkg-") for k in keys)
    assert sorted(third.dynamic_partitions_requests[0].partition_keys) == keys
    assert all(r.run_key == r.partition_key for r in third.run_requests)


def test_plan_backfill_missing_stale_in_flight_and_bounded():
    current = {"seed_functions": "v2", "deduped_seeds": "v1"}
    materialized = {
        ("seed_functions", "a"): "v2", ("deduped_seeds", "a"): "v1",  # current
        ("seed_functions", "b"): "v1", ("deduped_seeds", "b"): "v1",  # stale
        ("seed_functions", "c"): "v2",                                # missing deduped
    }
    plan = plan_backfill(["a", "b", "c", "d", "e"], current, materialized, in_flight={"d"}, limit=2)
    assert plan == [BackfillItem("b", "stale: seed_functions v1 -> v2"), BackfillItem("c", "missing: deduped_seeds")]
    assert [i.partition for i in plan_backfill(["a", "b", "c", "d", "e"], current, materialized, {"d"}, 10)] == ["b", "c", "e"]


def test_schedule_requests_missing_partitions_only(amr_env):
    from amr_dagster.definitions import defs

    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("seed_batches", ["x-1", "y-2", "z-3"])
    ctx = dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def())
    requests = backfill_schedule(ctx)
    assert sorted(r.partition_key for r in requests) == ["x-1", "y-2", "z-3"]
    assert all(r.tags["amr/backfill_reason"].startswith("missing") for r in requests)


def test_a_batch_dropped_into_the_seeds_folder_is_picked_up_and_processed(amr_storage):
    """What the daemon does with a sensor result: add the partitions, launch the requested run."""
    from amr_dagster.definitions import defs
    from amr_dagster.storage.frames import FrameStore

    instance = dg.DagsterInstance.get()
    (amr_storage["seeds"] / "second_batch.py").write_text(GOOD)
    result = _tick(instance)
    (request,) = result.run_requests
    for add in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    run = defs.resolve_job_def(request.job_name or "amr_pipeline").execute_in_process(
        partition_key=request.partition_key,
        instance=instance,
        tags=request.tags,
        asset_selection=[dg.AssetKey(s) for s in ("seed_functions", "filtered_seeds", "deduped_seeds")],
        run_config={"ops": {"filtered_seeds": {"config": {"typecheck": False, "docstring_judge": False}}}},
    )
    assert run.success
    kept = FrameStore().read("deduped_seeds", request.partition_key)
    assert kept["name"].to_list() == ["double"] and kept["status"].to_list() == ["accepted"]
    assert request.partition_key in instance.get_dynamic_partitions("seed_batches")
