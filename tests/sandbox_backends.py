"""Sandbox backends for the attack suite and the HumanEval conformance tests.

``make_backend(name)`` opens a real backend: ``local`` is bubblewrap (needs bwrap and root, as in
CI after ``scripts/install_system_deps.sh``), ``docker`` is the Docker backend on a real dockerd
started through ``tests/docker_fixtures.ensure_dockerd``. Each test module takes the
``sandbox`` fixture, parametrized over ``BACKENDS``.

``leftover_processes(sandbox)`` looks at the *host* process table: every process of a sandbox
uid must be a worker's own process (bwrap, or the runner server that is pid 1 of its pid
namespace); any other one is a process a job left behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from amr_dagster.sandbox.base import Sandbox, SandboxUnavailable

BACKENDS = ("local", "docker")


def make_backend(name: str, workers: int = 2, **opts) -> Sandbox:
    """A real, running backend; fails (never skips) when a landed backend cannot start here."""
    if name == "local":
        from amr_dagster.sandbox.bubblewrap import BubblewrapSandbox

        try:
            return BubblewrapSandbox(workers=workers, **opts)
        except SandboxUnavailable as exc:
            pytest.fail(f"local backend unavailable ({exc}); run scripts/install_system_deps.sh as root", pytrace=False)
    if name == "docker":
        try:
            from amr_dagster.sandbox.docker_backend import DockerSandbox
        except ImportError as exc:
            pytest.skip(f"docker backend not landed yet: {exc}")
        from tests.docker_fixtures import ensure_dockerd

        return DockerSandbox(workers=workers, base_url=ensure_dockerd(), **opts)
    raise ValueError(f"unknown backend {name!r}")


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.docker) if name == "docker" else name for name in BACKENDS],
                scope="module")
def sandbox(request):
    """Each backend in turn; the Docker one is marked ``docker`` (``-m "not docker"`` leaves the
    shared dockerd alone)."""
    backend = make_backend(request.param)
    yield backend
    backend.close()


def sandbox_uids(sandbox: Sandbox) -> set[int]:
    """Host uids the backend's sandboxed processes have run as (each backend's ``worker_uids``)."""
    return set(sandbox.worker_uids())  # type: ignore[attr-defined]


def _status_fields(pid: str) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _start_time(pid: str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _fork_servers(candidates: dict[str, dict[str, str]]) -> set[str]:
    """The workers' fork servers (``runner.fork_server.ForkServer``) among ``candidates``: each worker
    init's oldest child. The init starts it before a job and, after any job that leaves a
    process behind, kills everything and starts a new one later, so no process of a job is
    ever older than the fork server it came from."""
    oldest: dict[str, tuple[int, str]] = {}
    for pid, fields in candidates.items():
        parent = fields.get("PPid", "")
        try:
            if _status_fields(parent).get("NSpid", parent).split()[-1] != "1":
                continue
            started = _start_time(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
            continue
        if parent not in oldest or started < oldest[parent][0]:
            oldest[parent] = (started, pid)
    return {pid for _, pid in oldest.values()}


def leftover_processes(sandbox: Sandbox) -> list[str]:
    """Host processes of the sandbox's uids that are not a worker's own (bwrap or pid-1 loop)."""
    uids = sandbox_uids(sandbox)
    candidates: dict[str, dict[str, str]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = _status_fields(pid)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields.get("Uid", "-1").split()[0]) not in uids:
            continue
        inner_pid = fields.get("NSpid", pid).split()[-1]
        if fields.get("Name") in ("bwrap", "prlimit") or inner_pid == "1" or fields.get("State", "").startswith("Z"):
            continue
        candidates[pid] = {**fields, "cmdline": cmdline}
    servers = _fork_servers(candidates)
    return [
        f"pid {pid} (inner {fields.get('NSpid', pid).split()[-1]}) {fields.get('Name')}: {fields['cmdline'][:120]}"
        for pid, fields in candidates.items()
        if pid not in servers
    ]
