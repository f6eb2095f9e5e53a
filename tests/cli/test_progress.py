"""Progress reporting: tasks, rates/ETA, nesting, throttling, the engine and sandbox hooks, the
terminal sink, and the Dagster sink landing in a real run's event log."""

import io
import json
import dagster as dg
import polars as pl

from amr_dagster import progress
from amr_dagster.cli.live import TerminalProgress
from amr_dagster.generation.calls import generate_grouped
from amr_dagster.generation.execution import execute_responses
from amr_dagster.llm.base import LLMRequest, SamplingParams
from amr_dagster.llm.cache import SQLiteCache
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.replay import RECORDED_DIR, RecordedOutputsEngine
from amr_dagster.sandbox.base import Limits

MODEL = "llama_cpp:gemma-3-270m-q4_k_m:a5fd3b62230a"


def collect():
    events: list[progress.ProgressEvent] = []
    return events, events.append


def test_event_rate_eta_and_description():
    e = progress.ProgressEvent("responses", done=12, total=48, unit="samples", elapsed_s=15.0)
    assert e.rate == 0.8 and e.eta_s == 45.0
    assert e.describe() == "responses: 12/48 samples (25%), 0.80 samples/s, ETA 45s"
    done = progress.ProgressEvent("responses", 48, 48, "samples", 125.0, finished=True)
    assert done.describe().startswith("responses: 48/48 samples done in 2m05s")
    assert progress.ProgressEvent("x", 0, 10, "rows", 3.0).eta_s is None
    assert progress.ProgressEvent("x", 0, 10, "rows", 130.0).describe() == "x: 0/10 rows (0%), 2m10s so far, ETA ?"


def test_tasks_report_start_advances_end_and_nest():
    events, sink = collect()
    with progress.sink(sink):
        progress.advance(5)  # no open task: nothing happens
        with progress.task("outer", total=3) as outer:
            with progress.task("inner", total=2, unit="texts"):
                progress.advance(2)  # goes to the innermost task
            progress.advance(1)
            outer.advance(5)  # capped at the total
    progress.advance(1)
    assert [(e.name, e.done, e.finished) for e in events] == [
        ("outer", 0, False), ("inner", 0, False), ("inner", 2, False), ("inner", 2, True),
        ("outer", 1, False), ("outer", 3, False), ("outer", 3, True),
    ]


def test_a_task_that_does_not_advance_still_reports_its_elapsed_time():
    # A batched engine hands back a whole chunk at once: the task beats while it waits.
    import time

    events, sink = collect()
    with progress.sink(sink), progress.task("responses", total=4, unit="samples", heartbeat_s=0.05):
        time.sleep(0.3)
    beats = [e for e in events if not e.finished and e.done == 0]
    assert len(beats) >= 3
    assert beats[-1].elapsed_s > beats[0].elapsed_s and beats[-1].eta_s is None
    assert events[-1].finished
    progress.advance(1)  # the ticker stopped with the task: nothing arrives after its end
    assert events[-1].finished


def test_a_failing_sink_never_fails_the_work():
    def broken(event):
        raise RuntimeError("display gone")

    with progress.sink(broken), progress.task("t", total=1):
        progress.advance(1)


def test_throttled_keeps_first_last_and_one_per_interval():
    events, sink = collect()
    throttled = progress.throttled(sink, every_s=3600)
    with progress.sink(throttled), progress.task("t", total=100):
        for _ in range(100):
            progress.advance(1)
    assert [(e.done, e.finished) for e in events] == [(0, False), (100, True)]


def test_cached_engine_advances_the_stage_task_per_sample_hits_included(tmp_path):
    # Real outputs of the embedded model for the concepts step (tests/fixtures/recorded).
    record = json.loads((RECORDED_DIR / "concepts.json").read_text(encoding="utf-8"))["records"][0]
    params = SamplingParams(**{**record["params"], "n": 2, "stop": tuple(record["params"]["stop"])})
    requests = [LLMRequest(prompt=record["prompt"] + f"# {i}\n", params=params, tag=f"r{i}") for i in range(5)]
    engine = CachedEngine(RecordedOutputsEngine(MODEL), SQLiteCache(tmp_path / "c.sqlite"))
    for attempt in range(2):  # the second pass is all cache hits and must count the same
        events, sink = collect()
        with progress.sink(sink):
            generate_grouped(engine, requests, [f"k{i % 2}" for i in range(5)], chunk_size=2, label="seed_concepts")
        assert events[0].name == "seed_concepts" and events[0].total == 10
        assert events[-1].finished and events[-1].done == 10
        steps = [e.done for e in events if not e.finished]
        assert steps == sorted(steps) and len(steps) > 3, steps  # it moved between chunks


def test_execution_reports_between_sandbox_chunks(monkeypatch):
    import amr_dagster.generation.execution as execution
    from amr_dagster.sandbox.bubblewrap import BubblewrapSandbox

    monkeypatch.setattr(execution, "EXECUTION_CHUNK", 4)
    frame = pl.DataFrame({
        "id": [f"s{i}" for i in range(10)],
        "code": [f"def f():\n    return {i % 2}\n" for i in range(10)],
        "tests": ["assert f() == 1\n"] * 10,
        "status": ["accepted"] * 10,
        "reject_reason": pl.Series([None] * 10, dtype=pl.String),
    })
    events, sink = collect()
    sandbox = BubblewrapSandbox(workers=1)
    try:
        with progress.sink(sink):
            out, stats = execute_responses(frame, sandbox, Limits(), label="executed_responses")
    finally:
        sandbox.close()
    assert stats["by_status"] == {"passed": 5, "failed": 5}
    assert [e.done for e in events] == [0, 4, 8, 10, 10] and events[-1].finished


def test_terminal_sink_on_a_log_prints_lines_only_for_long_tasks():
    out, err = io.StringIO(), io.StringIO()
    term = TerminalProgress(stream=err, out=out, every_s=0.0)
    with progress.sink(term):
        with progress.task("responses", total=4, unit="samples"):
            progress.advance(2)
            term.line("seed_concepts 3 3 0")
            progress.advance(2)
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("  ... responses: 2/4 samples (50%)") and "ETA" in lines[0]
    assert lines[-1].startswith("  ... responses: 4/4 samples done in")
    assert out.getvalue() == "seed_concepts 3 3 0\n"

    quiet = io.StringIO()
    with progress.sink(TerminalProgress(stream=quiet, every_s=3600)), progress.task("short", total=2):
        progress.advance(2)
    assert quiet.getvalue() == ""


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_terminal_sink_on_a_tty_draws_and_clears_a_bar():
    err = _TTY()
    term = TerminalProgress(stream=err, out=io.StringIO(), width=10)
    with progress.sink(term), progress.task("embeddings", total=10, unit="texts"):
        progress.advance(5)
        assert "embeddings [#####.....] 5/10 texts" in err.getvalue()
    assert err.getvalue().endswith("\r")  # the bar is wiped when the task ends


def test_progress_lands_in_the_event_log_of_a_real_run():
    from assets import progress_log

    progress_log.install()

    @dg.asset
    def long_stage() -> int:
        with progress.task("long_stage", total=3, unit="rows"):
            for _ in range(3):
                progress.advance(1)
        return 3

    with dg.instance_for_test() as instance:
        result = dg.materialize([long_stage], instance=instance)
        logs = [(r.step_key, r.user_message) for r in instance.all_logs(result.run_id) if not r.is_dagster_event]
    assert ("long_stage", "long_stage: 0/3 rows (0%), 0s so far, ETA ?") in logs
    assert any(step == "long_stage" and m.startswith("long_stage: 3/3 rows done in") for step, m in logs), logs


def test_stage_hooks_call_back_as_each_step_ends_in_order():
    from amr_dagster.cli.live import stage_hooks

    seen: list[tuple[str, bool, bool]] = []

    @dg.asset
    def first() -> int:
        return 1

    @dg.asset
    def second(first: int) -> int:
        assert ("first", True, True) in seen  # the upstream line was printed before this step ran
        return first + 1

    @dg.asset
    def broken(second: int) -> int:
        raise ValueError("no")

    def done(name: str, ok: bool) -> None:
        seen.append((name, ok, True))

    job = dg.Definitions(assets=[first, second, broken]).resolve_implicit_global_asset_job_def().with_hooks(stage_hooks(done))
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    assert seen == [("first", True, True), ("second", True, True), ("broken", False, True)]
