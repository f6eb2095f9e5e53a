"""The local sandbox backend: pre-forked workers, each one long-lived bubblewrap sandbox.

Hardening (DESIGN section 5, measured here):

* bwrap runs as an unprivileged uid of its own per worker (run as root, the sandbox's uid would
  map to root), so a job cannot signal or count against another worker's processes;
* ``--unshare-all`` (network, pid, ipc, uts, cgroup, user namespaces; only an unconfigured
  loopback exists inside) and ``--disable-userns`` (no nested user namespace, so no route to
  capabilities for mount, ptrace or namespace games); ``--die-with-parent``; ``--new-session``
  (no terminal to inject into); ``--clearenv`` plus a fixed small environment (bwrap's own
  environment is readable inside as pid 1's environ, so bwrap is started with an empty one too);
* the file system is a fresh tmpfs root with read-only binds of ``/usr`` only (and the
  ``/bin``, ``/lib*`` symlinks merged-usr Debian needs), then ``--remount-ro /``; size-limited
  tmpfs ``/tmp`` and ``/dev/shm``; ``--proc /proc``, a minimal ``--dev /dev`` remounted
  read-only (bwrap's ``/dev`` is an unbounded tmpfs owned by the sandbox user); the runner script
  is copied in through a memfd (no host path of the project is visible);
* rlimits on the worker before bwrap execs (core 0, files, processes, file size, address
  space), tighter per-job rlimits on each job's child (see ``runner/child.py``); where the machine
  offers a writable cgroup-v1 memory hierarchy, a memory cgroup per worker also caps all of a
  job's processes together (job memory + tmpfs sizes + the worker's own overhead) and tells
  OOM kills apart (``memory_cgroups=False`` turns it off; nothing depends on it);
* the worker's python is pid 1 of the sandbox (``--as-pid-1``): its fork server gives every job
  a fresh child; after a job that left any process behind it ``kill(-1, SIGKILL)``s and reaps
  every other process; it empties ``/tmp`` and ``/dev/shm`` after every job; a worker that
  reports any anomaly (timeout, oom, output limit, tampering, leftover processes, leftover
  System V IPC, unclean scratch) is killed and replaced, and every worker is recycled after
  ``recycle_after`` jobs (the pool: ``sandbox/pool.py``, shared with the Docker backend).

Throughput (``bench.sandbox``): one worker per CPU, pinned to it; the per-job path is measured
in page faults as much as in code (``sandbox/runner``: the fork server, the supervisor compiling,
``gc.freeze``, a narrow tamper check). The python inside is the system ``/usr/bin/python3``,
never the project's virtualenv.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import select
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Callable

from amr_dagster.sandbox import harness
from amr_dagster.sandbox.base import SandboxJob, SandboxResult, SandboxUnavailable, Status
from amr_dagster.sandbox.packing import packed_runner
from amr_dagster.sandbox.pool import PooledSandbox, PooledWorker, next_worker_uid

RUNNER_PATH = "/" + harness.RUNNER_FILE
SANDBOX_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
MERGED_USR_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Unprivileged uids for workers: no passwd entry needed, far above regular and system users.
UID_BASE = 1_200_000
# Memory the worker's own server needs beside a job, in its cgroup (when cgroups are used).
WORKER_OVERHEAD_BYTES = 96 * 1024 * 1024


class _Launcher:
    """Starts every worker from one long-lived thread.

    ``--die-with-parent`` is ``PR_SET_PDEATHSIG``, which fires when the *thread* that forked
    bwrap exits, not the process; a worker started from a short-lived thread would die with it.
    A worker pinned to a CPU is started with this thread pinned there (a forked process
    inherits its thread's CPU mask), and the thread unpinned again afterwards.
    """

    def __init__(self) -> None:
        self._requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, name="amr-sandbox-launcher", daemon=True).start()

    def _loop(self) -> None:
        all_cpus = os.sched_getaffinity(0)
        while True:
            start, cpu, reply = self._requests.get()
            try:
                if cpu is not None:
                    os.sched_setaffinity(0, {cpu})
                reply.put((True, start()))
            except BaseException as exc:  # handed back to the caller's thread
                reply.put((False, exc))
            finally:
                if cpu is not None:
                    os.sched_setaffinity(0, all_cpus)

    def call(self, start: Callable[[], subprocess.Popen], cpu: int | None) -> subprocess.Popen:
        reply: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((start, cpu, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value


_launcher: _Launcher | None = None
_launcher_lock = threading.Lock()


def _launch(start: Callable[[], subprocess.Popen], cpu: int | None = None) -> subprocess.Popen:
    global _launcher
    with _launcher_lock:
        if _launcher is None:
            _launcher = _Launcher()
    return _launcher.call(start, cpu)


def bwrap_available(bwrap: str = "bwrap") -> str | None:
    """Why the local backend cannot run here, or None if it can (bwrap, python3, root)."""
    if shutil.which(bwrap) is None:
        return f"{bwrap} not found (scripts/install_system_deps.sh installs bubblewrap)"
    if not os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3 not found"
    if os.geteuid() != 0:
        return "the local backend switches to a dedicated unprivileged uid and must start as root"
    return None



class _MemoryCgroup:
    """A cgroup-v1 memory cgroup for one worker: caps the memory of all its processes together.

    Optional hardening on top of the per-process RLIMIT_AS: used when this machine has a
    writable cgroup-v1 memory hierarchy (as here), skipped otherwise. The worker joins it
    itself before exec'ing bwrap (``cgroup.procs`` is handed to the worker's uid), so every
    sandboxed process is inside from its first instruction. The host reads ``oom_kill`` to
    tell an out-of-memory kill from any other SIGKILL.
    """

    def __init__(self, path: str):
        self.path = path
        self.oom_control = os.path.join(path, "memory.oom_control")

    @staticmethod
    def parent() -> str | None:
        """``amr-sandbox`` under this process's own memory cgroup (so outer limits still hold)."""
        try:
            with open("/proc/self/cgroup") as f:
                own = next(line.split(":", 2)[2].strip() for line in f if line.split(":")[1] == "memory")
        except (OSError, StopIteration, IndexError):
            return None
        return os.path.join("/sys/fs/cgroup/memory", own.lstrip("/"), "amr-sandbox")

    @classmethod
    def create(cls, name: str, uid: int) -> "_MemoryCgroup | None":
        """The cgroup ``<our pid>-<name>``, or None where cgroup-v1 memory is not writable."""
        parent = cls.parent()
        if parent is None:
            return None
        path = os.path.join(parent, f"{os.getpid()}-{name}")
        try:
            os.makedirs(path, exist_ok=True)
            os.chown(os.path.join(path, "cgroup.procs"), uid, uid)
            cgroup = cls(path)
            cgroup.set_limit(1 << 30)
            return cgroup
        except OSError:
            return None

    @classmethod
    def remove_stale(cls) -> None:
        """Remove cgroups left by launchers that died (SIGKILL) before removing their own."""
        parent = cls.parent()
        try:
            names = os.listdir(parent) if parent else []
        except OSError:
            return
        for name in names:
            creator = name.split("-", 1)[0]
            if creator.isdigit() and not os.path.exists(f"/proc/{creator}"):
                try:
                    os.rmdir(os.path.join(parent, name))
                except OSError:
                    pass

    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def set_limit(self, limit_bytes: int) -> None:
        with open(os.path.join(self.path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(int(limit_bytes)))

    def oom_kills(self) -> int:
        """The ``oom_kill`` counter (read after every job: one open, read, close)."""
        try:
            fd = os.open(self.oom_control, os.O_RDONLY)
            try:
                text = os.read(fd, 4096)
            finally:
                os.close(fd)
        except OSError:
            return 0
        _, found, rest = text.partition(b"\noom_kill ")
        return int(rest.split(b"\n", 1)[0]) if found else 0

    def remove(self) -> None:
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)  # the killed sandbox's processes are still exiting


class _Worker(PooledWorker):
    """One long-lived bwrap sandbox running the runner's server loop (its uid and CPU are the
    slot's: a restarted worker keeps them)."""

    def __init__(self, sandbox: "BubblewrapSandbox", cpu: int | None):
        self.sandbox = sandbox
        self.cpu = cpu
        self.uid = next_worker_uid(UID_BASE)
        self.proc: subprocess.Popen | None = None
        self.jobs_done = 0
        self.stderr_file = None
        self.cgroup: _MemoryCgroup | None = None
        self.cgroup_limit = 0
        self.oom_kills_seen = 0
        self.read_ahead = bytearray()
        self.starts = 0

    def argv(self, runner_fd: int) -> list[str]:
        box = self.sandbox
        argv = []
        if self.cgroup is not None:  # join the worker's memory cgroup, then become the sandbox
            argv += ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', self.cgroup.procs_file()]
        argv += [
            "prlimit", "--core=0", "--nofile=1024", f"--nproc={box.worker_nproc}",
            f"--fsize={box.tmp_bytes}", f"--as={box.worker_as_bytes}", "--",
            box.bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
            "--die-with-parent", "--new-session", "--clearenv",
        ]
        for key, value in SANDBOX_ENV.items():
            argv += ["--setenv", key, value]
        argv += ["--ro-bind", "/usr", "/usr"]
        for name in MERGED_USR_DIRS:
            path = "/" + name
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        argv += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(box.tmp_bytes), "--tmpfs", "/tmp",
            "--size", str(box.shm_bytes), "--tmpfs", "/dev/shm",  # after --dev, or /dev hides it
            "--ro-bind-data", str(runner_fd), RUNNER_PATH,
            "--remount-ro", "/dev",  # bwrap's /dev tmpfs is unbounded: nothing may be written there
            "--remount-ro", "/",
            "--hostname", "sandbox", "--as-pid-1", "--chdir", "/tmp",
            *harness.serve_command(box.python, RUNNER_PATH, ("/tmp", "/dev/shm")),
        ]
        return argv

    def start(self, job: SandboxJob) -> None:
        self.starts += 1
        if self.sandbox.memory_cgroups:
            self.cgroup = _MemoryCgroup.create(f"{self.uid}-{self.starts}", self.uid)
            self.cgroup_limit = 0
            self.oom_kills_seen = 0
        self.read_ahead = bytearray()
        runner = packed_runner()
        runner_fd = os.memfd_create(f"amr-runner-{runner.sha256[:12]}", 0)
        try:
            os.write(runner_fd, runner.source.encode("utf-8"))
            os.lseek(runner_fd, 0, os.SEEK_SET)
            self.stderr_file = tempfile.TemporaryFile()
            argv = self.argv(runner_fd)
            self.proc = _launch(lambda: subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file,
                pass_fds=(runner_fd,), env={}, cwd="/", user=self.uid, group=self.uid,
                extra_groups=[], close_fds=True, start_new_session=True,
            ), cpu=self.cpu)
        finally:
            os.close(runner_fd)
        self.jobs_done = 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.proc = None
        if self.stderr_file is not None:
            self.stderr_file.close()
            self.stderr_file = None
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    def stderr_tail(self) -> str:
        if self.stderr_file is None:
            return ""
        try:
            self.stderr_file.seek(0)
            return self.stderr_file.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def run(self, job: SandboxJob) -> SandboxResult:
        started = time.monotonic()
        deadline = started + job.limits.wall_s + self.sandbox.grace_s
        self._prepare_cgroup(job)
        try:
            self._send(harness.encode_request(job))
            frame = harness.read_frame(lambda n: self._read_exact(n, deadline))
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            detail = f"worker failed: {type(exc).__name__}: {exc}"
            tail = self.stderr_tail().strip()
            self.stop()
            return harness.infra_error(job, detail + (f"; stderr: {tail[-500:]}" if tail else ""), time.monotonic() - started)
        self.jobs_done += 1
        result = harness.decode_report(job, frame, time.monotonic() - started)
        if self.cgroup is not None:
            kills = self.cgroup.oom_kills()
            if kills > self.oom_kills_seen:
                self.oom_kills_seen = kills
                result = _as_oom(result, self.cgroup_limit)
        return result

    def _prepare_cgroup(self, job: SandboxJob) -> None:
        """Size the worker's memory cgroup for this job."""
        if self.cgroup is None:
            return
        limit = job.limits.memory_bytes + self.sandbox.tmp_bytes + self.sandbox.shm_bytes + WORKER_OVERHEAD_BYTES
        if limit != self.cgroup_limit:
            try:
                self.cgroup.set_limit(limit)
                self.cgroup_limit = limit
            except OSError:
                pass  # usage above the new limit (EBUSY): keep the old one for this job

    def _send(self, data: bytes) -> None:
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def _read_exact(self, size: int, deadline: float) -> bytes:
        """``size`` bytes of the worker's answer; reads ahead (a report's header and body
        usually arrive in one read), keeping what is beyond ``size`` for the next call."""
        fd = self.proc.stdout.fileno()
        buf = self.read_ahead
        while len(buf) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("worker did not answer in time")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, max(size - len(buf), 65536))
            if not chunk:
                raise EOFError(f"worker exited (code {self.proc.poll()})")
            buf += chunk
        self.read_ahead = buf[size:]
        return bytes(buf[:size])


class BubblewrapSandbox(PooledSandbox):
    """The ``local`` backend: ``workers`` pre-forked bubblewrap sandboxes serving jobs."""

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        *,
        python: str = "/usr/bin/python3",
        bwrap: str = "bwrap",
        tmp_bytes: int = 128 * 1024 * 1024,
        shm_bytes: int = 32 * 1024 * 1024,
        worker_as_bytes: int = 8 * 1024 * 1024 * 1024,
        worker_nproc: int = 512,
        recycle_after: int = 2000,
        grace_s: float = 10.0,
        memory_cgroups: bool = True,
        pin_workers: bool = True,
    ):
        problem = bwrap_available(bwrap)
        if problem:
            raise SandboxUnavailable(f"local backend: {problem}")
        self.python = python
        self.bwrap = bwrap
        self.tmp_bytes = tmp_bytes
        self.shm_bytes = shm_bytes
        self.worker_as_bytes = worker_as_bytes
        self.worker_nproc = worker_nproc
        self.grace_s = grace_s
        self.memory_cgroups = memory_cgroups and _memory_cgroups_work()
        # Default one worker per CPU this process may use, each pinned to its own CPU (round
        # robin if more): a worker's supervisor, fork server and job child run one after the
        # other, so on one CPU they share warm caches and never migrate. Measured here with
        # HumanEval (bench.sandbox): 2 pinned workers on 2 cores did ~20% more programs/s
        # than 2 or 4 unpinned ones.
        cpus = sorted(os.sched_getaffinity(0))
        count = max(1, workers or len(cpus))
        super().__init__([_Worker(self, cpus[i % len(cpus)] if pin_workers else None) for i in range(count)], recycle_after)

    def worker_uids(self) -> list[int]:
        """The uids this sandbox's workers run as (tests check none of them has a process left)."""
        return [w.uid for w in self._workers]


_probe_counter = itertools.count()


def _memory_cgroups_work() -> bool:
    _MemoryCgroup.remove_stale()
    probe = _MemoryCgroup.create(f"probe-{os.getpid()}-{next(_probe_counter)}", os.getuid())
    if probe is None:
        return False
    probe.remove()
    return True


def _as_oom(result: SandboxResult, limit: int) -> SandboxResult:
    """The verdict after the kernel OOM-killed a process of the job's worker cgroup: the job
    went over its memory, even if only a background process died and the tests still passed."""
    anomalies = (*result.anomalies, "oom kill in worker cgroup")
    return dataclasses.replace(
        result, status=Status.OOM, anomalies=anomalies,
        detail=f"worker memory limit of {limit} bytes exceeded (OOM kill); {result.detail}",
    )
