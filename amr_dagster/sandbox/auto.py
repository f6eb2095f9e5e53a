"""Backend choice: Docker when an engine answers, else bubblewrap; fail closed if neither isolates.

Every sandbox handed out here has passed its isolation self-test (a passing job passes, a failing
job fails, the network is unreachable, a host file is unreadable). There is no fallback to a plain
subprocess: if no isolating backend works, ``SandboxUnavailable`` is raised and the caller stops.
"""

from __future__ import annotations

import logging
from typing import Any

from amr_dagster.sandbox.base import Sandbox, SandboxUnavailable

BACKENDS = ("auto", "docker", "local")
log = logging.getLogger(__name__)


def docker_engine_answers(timeout: float = 2.0) -> bool:
    """Whether a Docker engine answers a ping quickly: ``DOCKER_HOST``, else the socket of the
    engine ``scripts/dockerd.sh`` starts, else the default socket."""
    try:
        from amr_dagster.sandbox.docker_backend import engine_answers
    except ImportError:  # no docker SDK: no engine we can use
        return False
    return engine_answers(timeout=timeout)


def _open_docker(workers: int | None, opts: dict[str, Any]) -> Sandbox:
    from amr_dagster.sandbox.docker_backend import DockerSandbox

    return DockerSandbox(**opts) if workers is None else DockerSandbox(workers=workers, **opts)


def _open_local(workers: int | None, opts: dict[str, Any]) -> Sandbox:
    from amr_dagster.sandbox.bubblewrap import BubblewrapSandbox

    return BubblewrapSandbox(workers=workers, **opts)


def _options_for(backend: str, opts: dict[str, Any]) -> dict[str, Any]:
    """The shared ``opts`` this backend's constructor takes (e.g. ``image`` only for Docker)."""
    import inspect

    if not opts:
        return {}
    try:
        if backend == "docker":
            from amr_dagster.sandbox.docker_backend import DockerSandbox as cls
        else:
            from amr_dagster.sandbox.bubblewrap import BubblewrapSandbox as cls
    except ImportError:
        return dict(opts)
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(opts)
    return {k: v for k, v in opts.items() if k in params}


def _tested(open_backend, workers: int | None, opts: dict[str, Any]) -> Sandbox:
    sandbox = open_backend(workers, opts)
    try:
        sandbox.self_test()
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def open_sandbox(
    backend: str = "auto",
    workers: int | None = None,
    *,
    docker_opts: dict[str, Any] | None = None,
    local_opts: dict[str, Any] | None = None,
    **opts: Any,
) -> Sandbox:
    """A self-tested sandbox: ``docker``, ``local`` (bubblewrap) or ``auto``.

    ``opts`` go to whichever backend is opened, each taking the ones its constructor knows
    (``image`` reaches only Docker); ``docker_opts``/``local_opts`` go to that backend only.
    Raises ``SandboxUnavailable`` when the requested backend (for ``auto``: both) cannot isolate.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {backend!r}; choose one of {BACKENDS}")
    docker_kwargs = {**_options_for("docker", opts), **(docker_opts or {})}
    local_kwargs = {**_options_for("local", opts), **(local_opts or {})}
    if backend == "docker":
        return _tested(_open_docker, workers, docker_kwargs)
    if backend == "local":
        return _tested(_open_local, workers, local_kwargs)

    reasons = []
    if docker_engine_answers():
        try:
            return _tested(_open_docker, workers, docker_kwargs)
        except (SandboxUnavailable, ImportError) as exc:
            reasons.append(f"docker: {exc}")
            log.warning("Docker engine answers but its sandbox is unusable, trying bubblewrap: %s", exc)
    else:
        reasons.append("docker: no engine answers")
    try:
        return _tested(_open_local, workers, local_kwargs)
    except SandboxUnavailable as exc:
        reasons.append(f"local: {exc}")
    raise SandboxUnavailable("no isolating sandbox backend works here; refusing to run code. " + " | ".join(reasons))
