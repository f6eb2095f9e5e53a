"""Docker-specific behaviour of the Docker sandbox backend, on the real dockerd of scripts/dockerd.sh.

The attack suite and the HumanEval conformance (tests/sandbox/test_sandbox_attacks.py,
tests/sandbox/test_sandbox_humaneval.py) run against this backend too; this file covers what only the
Docker backend has: the container's configuration, container recycling and removal, the host-side
deadline, cgroup OOM kills, infra errors, launcher death and the reaper, and the engine script.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from amr_dagster.sandbox import harness
from amr_dagster.sandbox.base import Limits, SandboxJob, SandboxUnavailable, Status
from amr_dagster.sandbox.docker_backend import (
    DEFAULT_IMAGE,
    LABEL,
    OWNER_LABEL,
    DockerSandbox,
    _AttachedStream,
    engine_answers,
)
from tests.docker_fixtures import DOCKERD_SCRIPT

ROOT = Path(__file__).resolve().parents[2]
FAST = Limits(wall_s=10.0, cpu_s=5.0)
ADD = "def add(a, b):\n    return a + b\n"


def passing_job(job_id: str = "ok", limits: Limits = FAST) -> SandboxJob:
    return harness.build_job(ADD, "assert add(2, 3) == 5\n", limits, job_id=job_id)


def wait_until(predicate, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout_s}s waiting for: {what}")
        time.sleep(0.1)


def container_exists(sandbox: DockerSandbox, container_id: str) -> bool:
    import docker.errors

    try:
        sandbox.client.api.inspect_container(container_id)
        return True
    except docker.errors.NotFound:
        return False


def processes_of_uids(uids: set[int]) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) in uids:
                found.append(pid)
    return found


@pytest.fixture
def docker_sandbox(dockerd):
    sandbox = DockerSandbox(workers=1, base_url=dockerd)
    yield sandbox
    sandbox.close()


# -- parsing the engine's multiplexed attach stream (no engine needed) -------------------------


def _docker_chunk(kind: int, payload: bytes) -> bytes:
    return bytes([kind, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_attached_stream_demultiplexes_stdout_frames_split_anywhere():
    ours, theirs = socket.socketpair()
    stream = _AttachedStream(ours)
    report = harness._frame(b"nonce\n{}")
    wire = _docker_chunk(2, b"warning on stderr\n") + _docker_chunk(1, report[:5]) + _docker_chunk(1, report[5:])
    for i in range(0, len(wire), 3):  # the engine may cut its chunks anywhere
        theirs.sendall(wire[i : i + 3])
    frame = harness.read_frame(lambda n: stream.read_exact(n, time.monotonic() + 5))
    assert frame == b"nonce\n{}"
    assert bytes(stream.stderr_tail) == b"warning on stderr\n"
    theirs.close()
    with pytest.raises(EOFError):
        stream.read_exact(1, time.monotonic() + 5)
    stream.close()


def test_attached_stream_times_out_at_its_deadline():
    ours, theirs = socket.socketpair()
    stream = _AttachedStream(ours)
    with pytest.raises(TimeoutError):
        stream.read_exact(8, time.monotonic() + 0.2)
    stream.close()
    theirs.close()


# -- the engine and the image ------------------------------------------------------------------


@pytest.mark.docker
def test_dockerd_script_reports_the_running_engine(dockerd):
    status = subprocess.run(["bash", str(DOCKERD_SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert dockerd in status.stdout
    assert engine_answers(dockerd)
    assert not engine_answers("unix:///nonexistent/docker.sock", timeout=1)


@pytest.mark.docker
def test_image_reimports_from_the_cached_rootfs(dockerd, docker_sandbox):
    tag = "amr-sandbox:reimport-test"
    env = {**os.environ, "AMR_SANDBOX_IMAGE": tag}
    try:
        built = subprocess.run(["bash", str(DOCKERD_SCRIPT), "image"], capture_output=True, text=True, timeout=600, env=env)
        assert built.returncode == 0, built.stderr
        assert "imported" in built.stderr and "rootfs" in built.stderr  # from the tarball, no debootstrap
        config = docker_sandbox.client.api.inspect_image(tag)["Config"]
        assert config["User"] == "10001:10001"
        again = subprocess.run(["bash", str(DOCKERD_SCRIPT), "image"], capture_output=True, text=True, timeout=60, env=env)
        assert again.returncode == 0 and "present" in again.stderr
    finally:
        docker_sandbox.client.api.remove_image(tag, force=True)


@pytest.mark.docker
def test_missing_image_fails_closed(dockerd):
    with pytest.raises(SandboxUnavailable, match="missing"):
        DockerSandbox(image="amr-sandbox:does-not-exist", base_url=dockerd)


@pytest.mark.docker
def test_self_test_passes_on_the_real_engine(docker_sandbox):
    docker_sandbox.self_test()


# -- the worker container ----------------------------------------------------------------------


@pytest.mark.docker
def test_worker_container_is_locked_down(docker_sandbox):
    inside = (
        "import os\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key + ':'):\n"
        "            return line.split()[1]\n"
        "def can_write(path):\n"
        "    try:\n"
        "        open(path, 'w').close()\n"
        "        return True\n"
        "    except OSError:\n"
        "        return False\n"
    )
    tests = (
        "assert os.getuid() >= 10001 and os.getgid() == 10001\n"
        "assert status('CapEff') == '0000000000000000'\n"
        "assert status('NoNewPrivs') == '1'\n"
        "assert not can_write('/usr/lib/x') and not can_write('/etc/x')\n"
        "assert sorted(os.listdir('/sys/class/net')) == ['lo']\n"
        "assert os.environ.get('AMR_FAKE_SECRET') is None\n"
    )
    os.environ["AMR_FAKE_SECRET"] = "host-secret-must-not-leak"
    try:
        result = docker_sandbox.run([harness.build_job(inside, tests, FAST)])[0]
    finally:
        del os.environ["AMR_FAKE_SECRET"]
    assert result.status is Status.PASSED, result.detail
    assert result.tests_run == 6
    (container_id,) = docker_sandbox.container_ids()
    info = docker_sandbox.client.api.inspect_container(container_id)
    host, config = info["HostConfig"], info["Config"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] == FAST.pids + 8
    assert host["Memory"] == host["MemorySwap"] > FAST.memory_bytes
    assert host["AutoRemove"] is True
    assert host["LogConfig"]["Type"] == "none"
    assert set(host["Tmpfs"]) == {"/tmp", "/dev/shm"} and all("noexec" in o for o in host["Tmpfs"].values())
    assert config["StdinOnce"] is True and config["OpenStdin"] is True
    assert int(config["User"].split(":")[0]) >= 10001
    assert config["Labels"][LABEL] == "1"
    assert config["Labels"][OWNER_LABEL].endswith(f":{os.getpid()}")


@pytest.mark.docker
def test_a_clean_job_leaves_nothing_for_the_next_one_in_the_same_container(docker_sandbox):
    litter = (
        "import os\n"
        "open('/tmp/litter.txt', 'w').write('x')\n"
        "open('/dev/shm/litter.bin', 'wb').write(b'x' * 1000)\n"
        "os.makedirs('/tmp/deep/er', exist_ok=True)\n"
        "os.chmod('/tmp/deep', 0o500)\n"
    )
    first = docker_sandbox.run([harness.build_job(litter, "assert os.path.exists('/tmp/litter.txt')\n", FAST)])[0]
    assert first.status is Status.PASSED, first.detail
    look = (
        "import os\n"
        "def others():\n"
        "    # besides the init, the fork server (this process's parent) and itself\n"
        "    return [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getppid(), os.getpid())]\n"
    )
    tests = (
        "assert os.listdir('/dev/shm') == []\n"
        "assert os.listdir('/tmp') == ['job']\n"  # only this job's own work folder
        "assert others() == []\n"
    )
    second = docker_sandbox.run([harness.build_job(look, tests, FAST)])[0]
    assert second.status is Status.PASSED, second.detail
    assert docker_sandbox.containers_started == 1  # the same container served both jobs


@pytest.mark.docker
def test_container_recycled_after_k_jobs(dockerd):
    with DockerSandbox(workers=1, recycle_after=3, base_url=dockerd) as sandbox:
        seen = []
        for i in range(7):
            result = sandbox.run([passing_job(f"job-{i}")])[0]
            assert result.status is Status.PASSED, result.detail
            seen.append(tuple(sandbox.container_ids()))
        assert sandbox.containers_started == 3  # jobs 1-3, 4-6, 7
        assert len({ids for ids in seen}) == 3
        old = seen[0][0]
        wait_until(lambda: not container_exists(sandbox, old), 15, "the retired container to be removed")


@pytest.mark.docker
def test_a_job_with_other_container_limits_gets_a_fresh_container(docker_sandbox):
    small = Limits(wall_s=10.0, memory_bytes=128 * 1024 * 1024, pids=16)
    big = Limits(wall_s=10.0, memory_bytes=384 * 1024 * 1024, pids=48)
    memories = []
    for limits in (small, small, big):
        assert docker_sandbox.run([passing_job(limits=limits)])[0].status is Status.PASSED
        (container_id,) = docker_sandbox.container_ids()
        host = docker_sandbox.client.api.inspect_container(container_id)["HostConfig"]
        memories.append((host["Memory"], host["PidsLimit"]))
    assert docker_sandbox.containers_started == 2
    assert memories[0] == memories[1] and memories[2][0] - memories[0][0] == 256 * 1024 * 1024
    assert memories[2][1] == 48 + 8


@pytest.mark.docker
def test_timeout_removes_the_container_and_the_next_job_runs(docker_sandbox):
    assert docker_sandbox.run([passing_job()])[0].status is Status.PASSED
    (first,) = docker_sandbox.container_ids()
    sleeper = harness.build_job("import time\ntime.sleep(60)\n", "assert True\n", Limits(wall_s=1.0, cpu_s=1.0))
    result = docker_sandbox.run([sleeper])[0]
    assert result.status is Status.TIMEOUT
    wait_until(lambda: not container_exists(docker_sandbox, first), 15, "the timed-out container to be removed")
    after = docker_sandbox.run([passing_job("after")])[0]
    assert after.status is Status.PASSED
    assert docker_sandbox.container_ids() and docker_sandbox.container_ids()[0] != first


@pytest.mark.docker
def test_frozen_worker_hits_the_host_deadline(dockerd):
    with DockerSandbox(workers=1, base_url=dockerd, timeout_grace_s=1.0) as sandbox:
        assert sandbox.run([passing_job()])[0].status is Status.PASSED
        (container_id,) = sandbox.container_ids()
        slow = harness.build_job("import time\ntime.sleep(1.5)\n", "assert True\n", Limits(wall_s=2.0))
        freezer = threading.Timer(0.5, lambda: sandbox.client.api.pause(container_id))
        freezer.start()
        started = time.monotonic()
        result = sandbox.run([slow])[0]
        freezer.join()
        assert result.status is Status.TIMEOUT, result.detail
        assert "container removed" in result.detail
        assert time.monotonic() - started < 30
        wait_until(lambda: not container_exists(sandbox, container_id), 15, "the frozen container to be removed")
        assert sandbox.run([passing_job("after")])[0].status is Status.PASSED


@pytest.mark.docker
def test_processes_together_over_the_container_limit_are_an_oom(docker_sandbox):
    hog = (
        "import os, time\n"
        "children = []\n"
        "for _ in range(5):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = bytearray(100 * 1024 * 1024)\n"
        "        for i in range(0, len(block), 4096):\n"
        "            block[i] = 1\n"
        "        time.sleep(3)\n"
        "        os._exit(0)\n"
        "    children.append(pid)\n"
        "for pid in children:\n"
        "    os.waitpid(pid, 0)\n"
    )
    # Each process stays below RLIMIT_AS (memory_bytes); together they pass the container's limit.
    limits = Limits(wall_s=20.0, cpu_s=10.0, memory_bytes=160 * 1024 * 1024)
    result = docker_sandbox.run([harness.build_job(hog, "assert True\n", limits)])[0]
    assert result.status is Status.OOM, result.detail
    assert docker_sandbox.run([passing_job("after", limits)])[0].status is Status.PASSED


@pytest.mark.docker
def test_container_killed_mid_job_is_an_infra_error_and_retried(docker_sandbox):
    assert docker_sandbox.run([passing_job()])[0].status is Status.PASSED
    (container_id,) = docker_sandbox.container_ids()
    killer = threading.Timer(1.0, lambda: docker_sandbox.client.api.remove_container(container_id, force=True))
    killer.start()
    slow = harness.build_job("import time\ntime.sleep(5)\n", "assert True\n", FAST)
    result = docker_sandbox.run([slow])[0]
    killer.join()
    assert result.status is Status.INFRA_ERROR, result.detail  # never counted as a failing sample
    retried = harness.run_with_retries(docker_sandbox, [passing_job("retried")])
    assert retried[0].status is Status.PASSED


@pytest.mark.docker
def test_non_harness_job_is_refused(docker_sandbox):
    raw = SandboxJob(files={"x.py": "print(1)"}, command=("python3", "x.py"))
    assert docker_sandbox.run([raw])[0].status is Status.INFRA_ERROR


@pytest.mark.docker
def test_parallel_workers_run_many_jobs(dockerd):
    with DockerSandbox(workers=2, base_url=dockerd) as sandbox:
        jobs = [passing_job(f"p{i}") if i % 3 else harness.build_job(ADD, "assert add(1, 1) == 3\n", FAST, job_id=f"f{i}") for i in range(30)]
        results = sandbox.run(jobs)
        assert [r.job_id for r in results] == [j.job_id for j in jobs]
        assert [r.status for r in results] == [Status.FAILED if i % 3 == 0 else Status.PASSED for i in range(30)]
        assert sandbox.containers_started == 2


# -- launcher death and the reaper -------------------------------------------------------------

LAUNCHER = """
import sys, threading, time
sys.path.insert(0, {root!r})
from amr_dagster.sandbox import harness
from amr_dagster.sandbox.base import Limits
from amr_dagster.sandbox.docker_backend import DockerSandbox
sandbox = DockerSandbox(workers=1, base_url={host!r})
assert sandbox.run([harness.build_job("x = 1", "assert x == 1")])[0].passed
print("CONTAINERS", " ".join(sandbox.container_ids()), "UIDS", " ".join(map(str, sandbox.worker_uids())), flush=True)
sandbox.run([harness.build_job("import time\\ntime.sleep(120)", "assert True", Limits(wall_s=120))])
"""


@pytest.mark.docker
def test_sigkill_of_the_launcher_leaves_no_container_and_no_process(dockerd, docker_sandbox):
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER.format(root=str(ROOT), host=dockerd)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert launcher.stdout is not None and launcher.stderr is not None
    try:
        line = launcher.stdout.readline()
        assert line.startswith("CONTAINERS"), line + launcher.stderr.read()
        words = line.split()
        containers = words[1 : words.index("UIDS")]
        uids = {int(u) for u in words[words.index("UIDS") + 1 :]}
        time.sleep(1.0)  # the 120 s job is running inside the container now
        assert container_exists(docker_sandbox, containers[0])
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=30)
    # No reaper involved: the runner sees its stdin close, exits, and AutoRemove deletes the container.
    wait_until(lambda: not any(container_exists(docker_sandbox, c) for c in containers), 20, "the orphan container to go")
    wait_until(lambda: not processes_of_uids(uids), 10, "the orphan's processes to go")


@pytest.mark.docker
def test_reaper_removes_only_containers_of_dead_launchers(dockerd, docker_sandbox):
    api = docker_sandbox.client.api
    dead = subprocess.Popen(["true"])
    dead.wait()
    made = {}
    for owner in (f"{socket.gethostname()}:{dead.pid}", f"{socket.gethostname()}:{os.getpid()}"):
        created = api.create_container(
            DEFAULT_IMAGE, command=["sleep", "300"], labels={LABEL: "1", OWNER_LABEL: owner},
            host_config=api.create_host_config(network_mode="none"),
        )
        api.start(created["Id"])
        made[owner] = created["Id"]
    try:
        DockerSandbox(workers=1, base_url=dockerd).close()  # reaps on start
        assert not container_exists(docker_sandbox, made[f"{socket.gethostname()}:{dead.pid}"])
        assert container_exists(docker_sandbox, made[f"{socket.gethostname()}:{os.getpid()}"])
    finally:
        for container_id in made.values():
            try:
                api.remove_container(container_id, force=True)
            except Exception:
                pass


@pytest.mark.docker
def test_close_removes_every_container(dockerd):
    sandbox = DockerSandbox(workers=2, base_url=dockerd)
    sandbox.run([passing_job(f"c{i}") for i in range(4)])
    ids = sandbox.container_ids()
    assert len(ids) == 2
    sandbox.close()
    probe = DockerSandbox(workers=1, base_url=dockerd)
    try:
        wait_until(lambda: not any(container_exists(probe, c) for c in ids), 15, "closed containers to go")
    finally:
        probe.close()
