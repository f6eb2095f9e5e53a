"""Shared fixtures: every test gets its own data root, seeds folder and Dagster home."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:  # the session-scoped real dockerd (started and stopped by the tests themselves)
    from tests.docker_fixtures import *  # noqa: F401,F403
except ImportError:
    pass


@pytest.fixture
def amr_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Isolated AMR_DATA_DIR / AMR_SEEDS_DIR / DAGSTER_HOME under tmp_path."""
    data = tmp_path / "data"
    seeds = tmp_path / "seeds"
    home = tmp_path / "dagster_home"
    for p in (data, seeds, home):
        p.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("AMR_DATA_DIR", str(data))
    monkeypatch.setenv("AMR_SEEDS_DIR", str(seeds))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("AMR_LLM_BACKEND", os.environ.get("AMR_TEST_LLM_BACKEND", "none"))
    return {"data": data, "seeds": seeds, "home": home}


from tests.s3_fixtures import s3_root, s3_server  # noqa: E402,F401  (the session's SeaweedFS)


@pytest.fixture(params=["local", "s3"])
def amr_storage(request: pytest.FixtureRequest, amr_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """``amr_env`` with the data root on local disk or in S3 (the session's SeaweedFS), and a
    private machine cache; ``amr_storage["data"]`` is the root (a path or an ``s3://`` URL)."""
    monkeypatch.setenv("AMR_CACHE_DIR", str(tmp_path / "machine_cache"))
    if request.param == "local":
        return amr_env
    root = request.getfixturevalue("s3_root")
    monkeypatch.setenv("AMR_DATA_DIR", root)
    return {**amr_env, "data": root}


@pytest.fixture(scope="module")
def local_sandbox():
    """The real local (bubblewrap) sandbox with two workers, one per test module."""
    from amr_dagster.sandbox.auto import open_sandbox

    sandbox = open_sandbox("local", workers=2)
    yield sandbox
    sandbox.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failing test that used the session's S3 server reports the end of that server's log
    (a SeaweedFS "InternalError" says nothing by itself; its log says why)."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("s3_server")
    if report.failed and server is not None:
        report.sections.append(("SeaweedFS log (last lines)", server.log_tail()))
