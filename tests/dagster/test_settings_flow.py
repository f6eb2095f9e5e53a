"""Settings reach a run as run config and resource config, never through the environment.

``amr-dagster run`` with every flag leaves the process environment as it was, the run recorded
in the instance holds each flag's value in its config, and launching the same job with the
same run config through Dagster's GraphQL API (the mutation the UI's launchpad sends, to a real
``dagster-webserver`` without any AMR_* variable) writes identical frames.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import pytest

from amr_dagster import cli

ROOT = Path(__file__).resolve().parents[2]
SEED_STAGES = ["seed_functions", "filtered_seeds", "deduped_seeds"]
SEEDS = '''
def double(x: int) -> int:
    """Return twice the value of x, for any integer the caller passes in."""
    return 2 * x


def clamp(value: int, low: int, high: int) -> int:
    """Return value limited to the closed interval from low to high, whatever value is given."""
    return max(low, min(high, value))
'''
# A benchmark whose one problem is `clamp`: decontamination must reject it, so the frames show
# that --benchmark reached the run.
BENCHMARK = {"task_id": "Mine/0", "prompt": 'def clamp(value: int, low: int, high: int) -> int:\n    """Return value limited to the closed interval from low to high, whatever value is given."""\n',
             "canonical_solution": "    return max(low, min(high, value))\n", "test": "", "entry_point": "clamp"}

LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frames(data: Path, key: str) -> dict[str, pl.DataFrame]:
    return {stage: pl.read_parquet(data / stage / f"{key}.parquet") for stage in SEED_STAGES}


@pytest.mark.slow
def test_cli_flags_travel_as_run_config_and_a_graphql_launch_writes_the_same_frames(amr_env, tmp_path, capsys):
    home = amr_env["home"]
    (home / "dagster.yaml").write_text(  # launch at once: this test runs no daemon
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster._core.run_coordinator.default_run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    seeds = tmp_path / "batch"
    seeds.mkdir()
    (seeds / "m.py").write_text(SEEDS.lstrip("\n"))
    benchmark = tmp_path / "bench.jsonl"
    benchmark.write_text(json.dumps(BENCHMARK) + "\n")
    data = tmp_path / "cli-data"

    argv = [
        "run", "--seeds", str(seeds), "--select", ",".join(SEED_STAGES), "--stdlib-files", "3",
        "--max-seeds", "5", "--n-samples", "2", "--profile", "embedded", "--data-dir", str(data), "--no-typecheck", "--no-judge",
        "--benchmark", str(benchmark), "--llm-backend", "none", "--sandbox", "local", "-v",
        "--set", "deduped_seeds.threshold=0.8", "--set", "generation.response_max_tokens=99",
        "--set", "evolution.use_retrieval=false",
    ]
    environment = dict(os.environ)
    assert cli.main(argv) == 0, capsys.readouterr().out
    assert dict(os.environ) == environment  # the CLI set nothing (DAGSTER_HOME was already chosen)

    instance = dg.DagsterInstance.get()
    (record,) = instance.get_run_records(dg.RunsFilter(job_name="amr_pipeline"))
    run = record.dagster_run
    config = run.run_config
    resources = {k: v["config"] for k, v in config["resources"].items()}
    assert resources["data_root"] == {"path": str(data.resolve())}
    assert resources["generator"] == resources["teacher"] == {"backend": "none"}
    assert resources["generation"] == {"max_seeds": 5, "n_samples": 2, "profile": "embedded", "response_max_tokens": 99}
    assert resources["evolution"] == {"use_retrieval": False}
    assert resources["benchmarks"] == {"extra_files": [str(benchmark.resolve())]}
    assert resources["sandbox"] == {"backend": "local"}
    assert config["ops"]["filtered_seeds"]["config"] == {"typecheck": False, "docstring_judge": False}
    assert config["ops"]["deduped_seeds"]["config"] == {"threshold": 0.8}
    assert config["loggers"]["console"]["config"]["log_level"] == "INFO"
    assert run.asset_selection == {dg.AssetKey(s) for s in SEED_STAGES}
    key = run.tags["dagster/partition"]
    assert key.startswith("batch-")
    # --stdlib-files only sizes the built-in standard-library batch, which --seeds replaces.
    assert not (tmp_path / ".amr" / "builtin_seeds").exists()

    cli_frames = _frames(data, key)
    filtered = cli_frames["filtered_seeds"]
    assert filtered.filter(pl.col("name") == "clamp")["reject_reason"][0].startswith("contaminated")
    assert filtered.filter(pl.col("name") == "double")["status"][0] == "accepted"
    for stage in SEED_STAGES:
        (data / stage / f"{key}.parquet").unlink()

    # The same job and run config, launched the way the UI's launchpad does.
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMR_")}
    env.update(PYTHONPATH=str(ROOT), DAGSTER_HOME=str(home))
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline and server.poll() is None, "dagster-webserver did not come up"
            time.sleep(1)
        params = {
            "selector": {
                "repositoryLocationName": "amr_dagster", "repositoryName": "__repository__", "pipelineName": "amr_pipeline",
                "assetSelection": [{"path": [s]} for s in SEED_STAGES],
            },
            "runConfigData": config,
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
        }
        answer = httpx.post(url, json={"query": LAUNCH, "variables": {"executionParams": params}}, timeout=120).json()
        launched = answer["data"]["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", answer
        run_id = launched["run"]["runId"]
        deadline = time.time() + 300
        while instance.get_run_by_id(run_id).status not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
            assert time.time() < deadline, "the launched run did not finish"
            time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    launched_run = instance.get_run_by_id(run_id)
    assert launched_run.status == dg.DagsterRunStatus.SUCCESS
    assert launched_run.run_config == config
    graphql_frames = _frames(data, key)
    for stage in SEED_STAGES:
        assert graphql_frames[stage].equals(cli_frames[stage]), stage
