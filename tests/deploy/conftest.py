"""One deployment for the tests of this folder: PostgreSQL 15, the shipped deploy/dagster.yaml,
compute logs in the session's SeaweedFS, the dagster-daemon (queued runs, pools, sensor and
schedule) and the pool limits set by ``amr-dagster pools``; everything stopped at the end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.deploy.postgres import PostgresServer, create
from tests.deploy.seaweed import RestartableSeaweed

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# SeaweedFS takes ~17 s to come back after a crash here: a restart fits in this budget.
S3_RETRY_BUDGET_S = 45
# PostgreSQL is back ~1 s after `pg_ctl start`: a 15 s outage fits (the retries are up to 5 s
# apart); the long-outage test keeps the database down until the CLI has given up.
PG_RETRY_BUDGET_S = 25


@dataclass
class Deployment:
    home: Path
    postgres: PostgresServer
    s3: RestartableSeaweed
    env: dict[str, str]
    daemon: subprocess.Popen
    log: Path

    def cli(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """``amr-dagster ARGS`` as an operator runs it against this deployment."""
        return subprocess.run([str(BIN / "amr-dagster"), *args], cwd=ROOT, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def instance(self):
        """The instance as this test process sees it (dagster.yaml's `env:` values resolved now)."""
        from unittest import mock

        import dagster as dg

        with mock.patch.dict(os.environ, self.env):
            return dg.DagsterInstance.from_config(str(self.home))


@pytest.fixture(scope="package")  # torn down when tests/deploy/ is done, not at the session's end
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("deployment")
    # Not under pytest's tmp root: every pytest start (any user's session) chmods it back to 0700,
    # which would lock the `postgres` user out of its own cluster mid-session.
    pg_folder = Path(tempfile.mkdtemp(prefix="amr-pg-"))
    pg_folder.chmod(0o711)
    postgres = create(pg_folder / "cluster")
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    s3 = RestartableSeaweed(folder / "seaweedfs")  # the deployment's S3: compute logs, data roots
    (folder / "seaweedfs").mkdir()
    s3.start()
    bucket = s3.server.new_bucket()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMR_", "DAGSTER_", "AWS_"))}
    env.update(s3.server.env())
    env.update(postgres.env())
    env.update(
        DAGSTER_HOME=str(home), PYTHONPATH=str(ROOT), AMR_HOME=str(folder / "amr"), AMR_CACHE_DIR=str(folder / "cache"),
        AMR_SEEDS_DIR=str(folder / "seeds"),  # the daemon's seed sensor watches it (empty: no runs)
        AMR_COMPUTE_LOG_BUCKET=bucket, AMR_COMPUTE_LOG_PREFIX="compute-logs", AMR_LLM_BACKEND="none",
        AMR_S3_RETRY_BUDGET_S=str(S3_RETRY_BUDGET_S), AMR_PG_RETRY_BUDGET_S=str(PG_RETRY_BUDGET_S),
    )
    (folder / "seeds").mkdir()
    log = folder / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deployment = Deployment(home, postgres, s3, env, daemon, log)
    try:
        pools = deployment.cli("pools", "--set", "sandbox=1")
        assert pools.returncode == 0, pools.stdout + pools.stderr
        yield deployment
    finally:
        try:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:  # its code server outlives a SIGTERM by up to a minute: end the whole group
            os.killpg(daemon.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        daemon.wait()
        if postgres.running():
            postgres.stop()
        shutil.rmtree(pg_folder, ignore_errors=True)
        s3.stop()


def daemon_log(deployment: Deployment) -> str:
    return deployment.log.read_text()[-4000:]


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
