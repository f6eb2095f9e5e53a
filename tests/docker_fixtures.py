"""The real Docker engine for tests: started by the tests themselves through scripts/dockerd.sh.

``conftest.py`` star-imports this module, so any test can ask for the session fixture
``dockerd`` (the engine's ``DOCKER_HOST`` URL). The fixture runs ``scripts/dockerd.sh start``
and ``image`` (installing docker.io and building the sandbox image offline on a fresh machine,
from the cached rootfs tarball afterwards), and stops the engine at the end of the session only
if it was not already running before. If the engine cannot be started the tests fail with the
script's own message: CI runs as root on a machine like this one, so a missing engine is a
bug to see, not a reason to skip.
"""

from __future__ import annotations

import atexit
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERD_SCRIPT = ROOT / "scripts" / "dockerd.sh"
DEFAULT_DOCKER_HOST = "unix:///run/amr-docker/docker.sock"

_state: dict[str, object] = {}


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DOCKERD_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def ensure_dockerd() -> str:
    """Start the engine and build the image once per process; return its ``DOCKER_HOST``.

    Used by the ``dockerd`` fixture and by ``tests/sandbox_backends.make_backend("docker")``.
    Fails the calling test (never skips) when the engine or the image cannot be had.
    """
    if "host" in _state:
        return str(_state["host"])
    was_running = _script("status", timeout=30).returncode == 0
    started = _script("start", timeout=900)
    if started.returncode != 0:
        pytest.fail(
            "scripts/dockerd.sh start failed (the docker tests need a real dockerd; run as root):\n"
            + started.stdout
            + started.stderr,
            pytrace=False,
        )
    image = _script("image", timeout=1800)
    if image.returncode != 0:
        pytest.fail("scripts/dockerd.sh image failed:\n" + image.stdout + image.stderr, pytrace=False)
    host = DEFAULT_DOCKER_HOST
    for line in started.stdout.splitlines():
        if line.startswith("export DOCKER_HOST="):
            host = line.split("=", 1)[1].strip()
    os.environ["DOCKER_HOST"] = host
    _state.update(host=host, started_here=not was_running)
    if not was_running:  # also stopped when only make_backend() asked for it
        atexit.register(stop_dockerd_if_started_here)
    return host


def stop_dockerd_if_started_here() -> None:
    if _state.pop("started_here", False):
        _script("stop", timeout=120)
    _state.pop("host", None)


@pytest.fixture(scope="session")
def dockerd():
    """``DOCKER_HOST`` of a running engine with the sandbox image; stopped after the session."""
    host = ensure_dockerd()
    yield host
    stop_dockerd_if_started_here()
