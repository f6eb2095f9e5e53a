"""Docker sandbox backend: long-lived, locked-down worker containers on a real dockerd.

Each worker is one container: ``network_mode=none``, read-only root, small ``noexec`` tmpfs
``/tmp`` and ``/dev/shm``, a non-root uid of its own, ``cap_drop=ALL``, ``no-new-privileges``,
pids / memory (= memory+swap) / CPU limits, nofile and core ulimits, no log driver. Its init
(PID 1) is the harness-owned runner in server mode (the packed ``sandbox/runner`` with
``--serve``, passed with ``python3 -I -c`` so the image needs nothing but python3): the same runner, nonce protocol and
verdict code as the bubblewrap backend. The launcher attaches to the container's stdin/stdout,
writes ``harness.encode_request(job)`` and reads one report frame back, so a job costs a fork
inside a warm container instead of a container start (~0.7 s here) or a ``docker exec``.

A worker is replaced (container force-removed, a fresh one started on the next job; the pool
is ``sandbox/pool.py``, shared with the bubblewrap backend) after ``recycle_after`` jobs, when
a job needs other container limits, and after any anomaly: a timeout, an OOM kill, an output flood, leftover
processes or files, tampering, a protocol error, a dead container. The runner enforces the wall
limit itself; if it does not answer within ``wall_s + timeout_grace_s`` the container is killed
and removed and the job is a ``timeout``. A cgroup OOM kill (several processes together above the
container's memory limit) is read from the container's memory cgroup on the host and turns the
verdict into ``oom``. Docker API errors become ``infra_error`` results, which callers retry
(``harness.run_with_retries``) and never count as a failing sample.

Each container runs as its own uid (``uid_base`` + a counter, gid 10001): ``RLIMIT_NPROC`` is
per uid machine-wide, so a fork bomb in one worker cannot starve the others.

No container outlives its launcher: containers are created with ``StdinOnce`` and
``AutoRemove``. When the launcher dies, even by SIGKILL, the kernel closes its attach
connection, dockerd closes the container's stdin, the runner sees the hang-up (it watches its
stdin during every job), kills the job and exits, and the engine removes the stopped container.
Every container also carries the labels ``amr-dagster.sandbox=1``,
``amr-dagster.owner=<host>:<pid>`` and ``amr-dagster.runner=<packed runner's sha256>``; a new ``DockerSandbox`` (and ``scripts/dockerd.sh reap``)
removes containers whose owner process is gone, for the case where the engine itself was down or
restarting when the launcher died.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from amr_dagster.sandbox import harness
from amr_dagster.sandbox.base import SandboxJob, SandboxResult, SandboxUnavailable, Status
from amr_dagster.sandbox.packing import packed_runner
from amr_dagster.sandbox.pool import PooledSandbox, PooledWorker, next_worker_uid

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "amr-sandbox:py3"
DEFAULT_DOCKER_HOST = "unix:///run/amr-docker/docker.sock"  # where scripts/dockerd.sh listens
SANDBOX_GID = 10001
LABEL = "amr-dagster.sandbox"
OWNER_LABEL = "amr-dagster.owner"
RUNNER_LABEL = "amr-dagster.runner"
SCRATCH_DIRS = ("/tmp", "/dev/shm")
CONTAINER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
UID_BASE = 2_000_000


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


SYSTEM_DOCKER_HOST = "unix:///var/run/docker.sock"


def docker_host(base_url: str | None = None) -> str:
    """The engine to use: ``base_url``, else ``$DOCKER_HOST``, else scripts/dockerd.sh's socket,
    else a system engine's socket if one exists."""
    if base_url or os.environ.get("DOCKER_HOST"):
        return base_url or os.environ["DOCKER_HOST"]
    for candidate in (DEFAULT_DOCKER_HOST, SYSTEM_DOCKER_HOST):
        if os.path.exists(candidate.removeprefix("unix://")):
            return candidate
    return DEFAULT_DOCKER_HOST


def docker_client(base_url: str | None = None, timeout: float = 60.0):
    """A docker SDK client for ``docker_host(base_url)``."""
    import docker

    return docker.DockerClient(base_url=docker_host(base_url), version="auto", timeout=timeout)


def engine_answers(base_url: str | None = None, timeout: float = 3.0) -> bool:
    """True if a Docker engine answers a ping (backend ``auto`` prefers Docker then)."""
    try:
        client = docker_client(base_url, timeout=timeout)
    except Exception:  # no SDK, bad URL, no socket
        return False
    try:
        return bool(client.ping())
    except Exception:  # refused, timed out: no engine
        return False
    finally:
        client.close()


def reap_orphans(client) -> int:
    """Remove sandbox containers whose launcher process (on this host) is gone; return the count."""
    removed = 0
    host = socket.gethostname()
    for container in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
        owner = (container.get("Labels") or {}).get(OWNER_LABEL, "")
        owner_host, _, pid_text = owner.rpartition(":")
        if owner_host == host and pid_text.isdigit() and _pid_alive(int(pid_text)):
            continue
        try:
            client.api.remove_container(container["Id"], force=True)
            removed += 1
        except Exception as exc:  # already gone (AutoRemove raced us)
            log.debug("reap %s: %s", container["Id"][:12], exc)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _AttachedStream:
    """A container's attached stdin (write) and multiplexed stdout/stderr (read).

    Without a TTY the engine prefixes every chunk with an 8-byte header: stream type (1 stdout,
    2 stderr), three zero bytes, the big-endian payload size. Stdout payloads are the runner's
    report frames; stderr (the runner's own tracebacks, if any) is kept as a short tail.
    """

    def __init__(self, sock: Any):
        self._sdk_socket = sock  # keeps the SDK's HTTP response (and so the connection) alive
        self.raw: socket.socket = getattr(sock, "_sock", sock)
        self.stdout = bytearray()
        self.stderr_tail = bytearray()
        self._pending = bytearray()

    def send(self, data: bytes, timeout: float = 60.0) -> None:
        self.raw.settimeout(timeout)
        self.raw.sendall(data)

    def read_exact(self, size: int, deadline: float) -> bytes:
        """Exactly ``size`` stdout bytes; TimeoutError at ``deadline``, EOFError if the stream ended."""
        while len(self.stdout) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("worker did not answer in time")
            self.raw.settimeout(remaining)
            try:
                chunk = self.raw.recv(1 << 20)
            except socket.timeout as exc:
                raise TimeoutError("worker did not answer in time") from exc
            if not chunk:
                raise EOFError("worker container closed its output")
            self._demux(chunk)
        data = bytes(self.stdout[:size])
        del self.stdout[:size]
        return data

    def _demux(self, chunk: bytes) -> None:
        self._pending += chunk
        while len(self._pending) >= 8:
            kind = self._pending[0]
            (size,) = struct.unpack(">I", self._pending[4:8])
            if len(self._pending) < 8 + size:
                return
            payload = bytes(self._pending[8 : 8 + size])
            del self._pending[: 8 + size]
            if kind == 1:
                self.stdout += payload
            else:
                self.stderr_tail = (self.stderr_tail + payload)[-4096:]

    def close(self) -> None:
        for closer in (lambda: self.raw.shutdown(socket.SHUT_RDWR), self.raw.close, self._sdk_socket.close):
            try:
                closer()
            except Exception:
                pass


@dataclass(frozen=True)
class ContainerSpec:
    """The limits fixed when a container starts; a job with other values gets a fresh worker."""

    memory_bytes: int
    pids: int


class _Worker(PooledWorker):
    """One slot of long-lived containers whose init is the harness runner in server mode; each
    container started runs as a uid of its own, with the limits of the job that started it."""

    def __init__(self, sandbox: DockerSandbox):
        self.sandbox = sandbox
        self.spec: ContainerSpec | None = None
        self.uid = 0
        self.jobs_done = 0
        self.container_id: str | None = None
        self.stream: _AttachedStream | None = None
        self._oom_file: str | None = None

    def fits(self, job: SandboxJob) -> bool:
        return self.spec == _spec_of(job)

    def alive(self) -> bool:
        return self.container_id is not None

    def start(self, job: SandboxJob) -> None:
        sb = self.sandbox
        api = sb.client.api
        self.spec = _spec_of(job)
        self.uid = sb._new_uid()
        from docker.types import LogConfig, Ulimit

        # tmpfs pages are charged to the container's memory cgroup: room for them, and for the
        # runner itself, on top of what the job may use.
        memory = self.spec.memory_bytes + sb.tmp_bytes + sb.shm_bytes + sb.worker_overhead_bytes
        host_config = api.create_host_config(
            network_mode="none",
            read_only=True,
            tmpfs={
                "/tmp": f"rw,nosuid,nodev,noexec,size={sb.tmp_bytes},nr_inodes={sb.tmp_inodes},mode=1777",
                "/dev/shm": f"rw,nosuid,nodev,noexec,size={sb.shm_bytes},nr_inodes=1024,mode=1777",
            },
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=self.spec.pids + 8,
            mem_limit=memory,
            memswap_limit=memory,
            nano_cpus=int(sb.cpus * 1e9),
            ulimits=[  # the runner sets tighter ones on each job's process
                Ulimit(name="nofile", soft=1024, hard=1024),
                Ulimit(name="core", soft=0, hard=0),
                Ulimit(name="fsize", soft=sb.tmp_bytes, hard=sb.tmp_bytes),
            ],
            auto_remove=True,
            ipc_mode="private",
            log_config=LogConfig(type="none"),
        )
        runner = packed_runner()
        command = ["python3", "-I", "-c", runner.source, "--serve"]
        for folder in SCRATCH_DIRS:
            command += ["--scratch", folder]
        created = api.create_container(
            sb.image,
            command=command,
            user=f"{self.uid}:{SANDBOX_GID}",
            detach=False,  # with stdin_open this sets StdinOnce: our disconnect closes its stdin
            stdin_open=True,
            tty=False,
            network_disabled=True,
            hostname="sandbox",
            working_dir="/tmp",
            environment=CONTAINER_ENV,
            labels={LABEL: "1", OWNER_LABEL: sb.owner, RUNNER_LABEL: runner.sha256},
            host_config=host_config,
        )
        container_id: str = created["Id"]
        self.container_id = container_id
        try:
            sock = api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self.stream = _AttachedStream(sock)
            api.start(container_id)
            self._oom_file = self._find_oom_file(container_id)
        except BaseException:
            self.stop()
            raise
        self.jobs_done = 0

    def _find_oom_file(self, container_id: str) -> str | None:
        """The host path of the container's OOM-kill counter (cgroup v1 or v2), if visible here."""
        try:
            pid = self.sandbox.client.api.inspect_container(container_id)["State"]["Pid"]
            with open(f"/proc/{pid}/cgroup") as fh:
                lines = fh.read().splitlines()
        except Exception:  # a remote engine, or the container already died
            return None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                candidate = f"/sys/fs/cgroup/memory{path}/memory.oom_control"
                if os.path.exists(candidate):
                    return candidate
        for line in lines:
            if line.startswith("0::"):
                candidate = f"/sys/fs/cgroup{line[3:]}/memory.events"
                if os.path.exists(candidate):
                    return candidate
        return None

    def oom_kills(self) -> int | None:
        if self._oom_file is None:
            return None
        try:
            with open(self._oom_file) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            return None
        return None

    def run(self, job: SandboxJob) -> SandboxResult:
        stream = self.stream
        assert stream is not None, "start() the worker first"
        started = time.monotonic()
        oom_before = self.oom_kills()
        self.jobs_done += 1
        deadline = started + job.limits.wall_s + self.sandbox.timeout_grace_s
        try:
            stream.send(harness.encode_request(job))
            frame = harness.read_frame(lambda n: stream.read_exact(n, deadline))
        except TimeoutError:
            self.stop()  # the runner could not end the job itself: the container goes
            return SandboxResult(
                status=Status.TIMEOUT, detail="timeout: no answer within the wall limit; container removed",
                duration_s=time.monotonic() - started, job_id=job.job_id, anomalies=(Status.TIMEOUT.value,),
            )
        except (OSError, EOFError, ValueError) as exc:
            oom = self._died_of_oom(oom_before)
            tail = stream.stderr_tail.decode("utf-8", "replace").strip()
            self.stop()
            if oom:
                return SandboxResult(
                    status=Status.OOM, detail="oom: the container's memory limit was exceeded",
                    duration_s=time.monotonic() - started, job_id=job.job_id, anomalies=(Status.OOM.value,),
                )
            detail = f"worker container failed: {type(exc).__name__}: {exc}{self._state_note()}"
            return harness.infra_error(job, detail + (f"; stderr: {tail[-500:]}" if tail else ""), time.monotonic() - started)
        result = harness.decode_report(job, frame, time.monotonic() - started)
        oom_after = self.oom_kills()
        if oom_before is not None and oom_after is not None and oom_after > oom_before and result.status in (
            Status.FAILED, Status.PASSED, Status.INFRA_ERROR, Status.TIMEOUT,
        ):
            # The kernel killed a job process at the container's memory limit (several processes
            # together, or tmpfs + heap): the runner saw only a SIGKILL.
            result = replace(
                result, status=Status.OOM, detail=f"oom: the container's memory limit was exceeded ({result.detail})",
                anomalies=(*result.anomalies, Status.OOM.value),
            )
        return result

    def _state_note(self) -> str:
        """The dead container's state, if the engine still has it (for the infra_error detail)."""
        try:
            state = self.sandbox.client.api.inspect_container(self.container_id or "")["State"]
        except Exception:
            return " (container already removed)"
        return f" (container {state.get('Status')}, exit code {state.get('ExitCode')}, jobs served {self.jobs_done - 1})"

    def _died_of_oom(self, oom_before: int | None) -> bool:
        after = self.oom_kills()
        if oom_before is not None and after is not None and after > oom_before:
            return True
        try:
            state = self.sandbox.client.api.inspect_container(self.container_id or "")["State"]
            return bool(state.get("OOMKilled"))
        except Exception:  # already removed (AutoRemove): no evidence of an OOM kill
            return False

    def stop(self) -> None:
        """Close the attach connection (the runner then exits) and force-remove the container."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if self.container_id is not None:
            try:
                self.sandbox.client.api.remove_container(self.container_id, force=True)
            except Exception as exc:  # gone already (AutoRemove) is fine
                text = str(exc)
                if "No such container" not in text and "already in progress" not in text:
                    log.warning("removing container %s: %s", self.container_id[:12], exc)
            self.container_id = None
        self._oom_file = None


class DockerSandbox(PooledSandbox):
    """The ``docker`` backend: ``workers`` long-lived containers of ``image`` serving jobs.

    ``base_url``: the engine (default ``$DOCKER_HOST``, else scripts/dockerd.sh's socket).
    ``recycle_after``: jobs per container before a fresh one replaces it.
    ``tmp_bytes``/``shm_bytes``: sizes of the ``/tmp`` and ``/dev/shm`` tmpfs; the container's
    memory limit is the job's ``memory_bytes`` plus these plus ``worker_overhead_bytes``.
    ``cpus``: CPU share of each container. Runs only harness jobs (``harness.build_job``).
    """

    name = "docker"
    infra_exceptions = (Exception,)  # docker API / connection trouble: the sandbox failed, not the job

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        workers: int = 2,
        recycle_after: int = 500,
        base_url: str | None = None,
        *,
        tmp_bytes: int = 64 * 1024 * 1024,
        tmp_inodes: int = 4096,
        shm_bytes: int = 16 * 1024 * 1024,
        worker_overhead_bytes: int = 96 * 1024 * 1024,
        cpus: float = 1.0,
        timeout_grace_s: float = 10.0,
    ):
        self.image = image
        self.tmp_bytes = tmp_bytes
        self.tmp_inodes = tmp_inodes
        self.shm_bytes = shm_bytes
        self.worker_overhead_bytes = worker_overhead_bytes
        self.cpus = cpus
        self.timeout_grace_s = timeout_grace_s
        self.owner = owner_tag()
        try:
            self.client = docker_client(base_url)
            self.client.ping()
        except Exception as exc:
            raise SandboxUnavailable(f"docker backend: no engine at {docker_host(base_url)}: {exc}") from exc
        try:
            self.client.api.inspect_image(image)
        except Exception as exc:
            self.client.close()
            raise SandboxUnavailable(
                f"docker backend: image {image} missing (scripts/dockerd.sh image builds it): {exc}"
            ) from exc
        reap_orphans(self.client)
        self.workers = max(1, int(workers))
        self._uids_lock = threading.Lock()
        self._uids_used: set[int] = set()
        super().__init__([_Worker(self) for _ in range(self.workers)], recycle_after)

    @property
    def containers_started(self) -> int:
        """Containers started over this sandbox's life (tests check reuse and recycling)."""
        return self.worker_starts

    def worker_uids(self) -> list[int]:
        """Every uid this sandbox's containers have run as (tests look for leftover processes)."""
        with self._uids_lock:
            return sorted(self._uids_used)

    def container_ids(self) -> list[str]:
        """Containers this sandbox is running now (tests check they disappear when they must)."""
        return [w.container_id for w in self._workers if w.container_id]

    def close(self) -> None:
        super().close()
        try:
            self.client.close()
        except Exception:
            pass

    def _new_uid(self) -> int:
        uid = next_worker_uid(UID_BASE)
        with self._uids_lock:
            self._uids_used.add(uid)
        return uid


def _spec_of(job: SandboxJob) -> ContainerSpec:
    return ContainerSpec(job.limits.memory_bytes, job.limits.pids)
