"""The attack suite, run against every backend (``local`` bubblewrap, ``docker``).

Each attack is bounded in time and size and must end contained: the expected status, no
leftover process of the sandbox's uids on the host, no file written outside the sandbox, and
the sandbox still serving the next job (``attack`` runs a passing job after every attack).
Where the attack's effect is best observed from inside, the program probes and the tests
assert the probe came back empty, so ``passed`` means "contained" and anything else shows why.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from amr_dagster.sandbox.base import Limits, Sandbox, SandboxResult, Status
from amr_dagster.sandbox.harness import build_job
from tests.sandbox_backends import leftover_processes, sandbox  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
# A secret in the harness's own environment: no sandboxed process may ever see it.
FAKE_SECRET_NAME = "AMR_FAKE_SECRET"
os.environ[FAKE_SECRET_NAME] = "s3cr3t-" + secrets.token_hex(8)

# Generous wall time: attacks that must *finish* should not time out on a loaded 2-core machine.
LIMITS = Limits(wall_s=10.0, cpu_s=3.0, memory_bytes=256 * 1024 * 1024, pids=32,
                file_size_bytes=8 * 1024 * 1024, output_bytes=32 * 1024)
FOLLOW_UP = ("def double(x):\n    return 2 * x\n", "assert double(21) == 42\n")


def wait_no_leftovers(sb: Sandbox, within_s: float = 5.0) -> list[str]:
    deadline = time.monotonic() + within_s
    while True:
        found = leftover_processes(sb)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def attack(sb: Sandbox, code: str, tests: str = "assert True\n", limits: Limits = LIMITS) -> SandboxResult:
    """Run one attack, then check containment and that the sandbox still serves a job."""
    [result] = sb.run([build_job(textwrap.dedent(code), textwrap.dedent(tests), limits, "attack")])
    assert wait_no_leftovers(sb) == [], f"processes left behind by the attack ({result.status}: {result.detail})"
    [follow_up] = sb.run([build_job(*FOLLOW_UP, limits, "follow-up")])
    assert follow_up.status is Status.PASSED, f"sandbox broken after the attack: {follow_up.detail}"
    return result


def expect(result: SandboxResult, *statuses: Status) -> None:
    assert result.status in statuses, (
        f"expected {[s.value for s in statuses]}, got {result.status.value}: {result.detail}\n"
        f"stdout: {result.stdout[-1000:]}\nstderr: {result.stderr[-1000:]}"
    )


# ---------------------------------------------------------------------------------- network


@pytest.mark.parametrize("family,address", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_tcp_listener_on_host_loopback_is_unreachable(sandbox, family, address):
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((address, 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        result = attack(sandbox, f"""
            import socket
            def reach():
                try:
                    socket.create_connection(({address!r}, {port}), timeout=2).close()
                    return "connected"
                except OSError as exc:
                    return repr(exc)
            print(reach())
            """, "assert 'connected' != reach()\n")
        expect(result, Status.PASSED)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
    finally:
        listener.close()


def test_host_unix_socket_is_unreachable(sandbox, tmp_path):
    path = f"/tmp/amr-attack-{secrets.token_hex(4)}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(1)
    server.setblocking(False)
    try:
        result = attack(sandbox, f"""
            import socket
            def reach():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect({path!r})
                    return "connected"
                except OSError as exc:
                    return repr(exc)
            """, "assert reach() != 'connected'\n")
        expect(result, Status.PASSED)
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()
        os.unlink(path)


def test_dns_and_outside_network_fail(sandbox):
    result = attack(sandbox, """
        import socket
        def leaks():
            found = []
            try:
                found.append(socket.getaddrinfo("pypi.org", 443))
            except OSError:
                pass
            for target in [("8.8.8.8", 53), ("1.1.1.1", 443)]:
                try:
                    socket.create_connection(target, timeout=2).close()
                    found.append(target)
                except OSError:
                    pass
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.sendto(b"x", ("8.8.8.8", 53))
                found.append("udp sent")
            except OSError:
                pass
            return found
        """, "assert leaks() == []\n")
    expect(result, Status.PASSED)


# ---------------------------------------------------------------------------------- processes


def test_fork_bomb(sandbox):
    result = attack(sandbox, """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """, limits=Limits(**{**LIMITS.__dict__, "wall_s": 3.0}))
    expect(result, Status.TIMEOUT)


def test_setsid_double_fork_daemons_are_killed(sandbox):
    result = attack(sandbox, """
        import os, time
        for _ in range(4):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.closerange(0, 256)
                    time.sleep(0.1)  # the parent's own forks first (same pids limit)
                    while True:
                        try:
                            os.fork()
                        except OSError:
                            time.sleep(0.01)
                os._exit(0)
        time.sleep(0.3)
        """)
    expect(result, Status.PASSED)


def test_thread_bomb(sandbox):
    result = attack(sandbox, """
        import threading, time
        threads = []
        while True:
            t = threading.Thread(target=time.sleep, args=(60,), daemon=True)
            t.start()
            threads.append(t)
        """)
    expect(result, Status.FAILED, Status.OOM)
    assert "thread" in result.detail.lower() or result.status is Status.OOM, result.detail


# ---------------------------------------------------------------------------------- memory


def test_one_large_allocation_is_oom(sandbox):
    result = attack(sandbox, "blob = b'x' * (4 * 1024 ** 3)\n")
    expect(result, Status.OOM)


def test_several_processes_allocating_together(sandbox):
    # Six processes of 100 MB each: every one is within the job's 256 MB, together they are
    # far above the job's memory plus its tmpfs sizes, which a container (docker) or a memory
    # cgroup per worker (local, where the machine has cgroups) caps.
    result = attack(sandbox, """
        import os, time
        children = []
        for _ in range(6):
            pid = os.fork()
            if pid == 0:
                blob = b"x" * (100 * 1024 * 1024)
                time.sleep(3)
                os._exit(0)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in children]
        """, "assert True\n")
    if getattr(sandbox, "memory_cgroups", True):
        expect(result, Status.OOM)
    else:  # per-process limits only: each child may finish
        expect(result, Status.PASSED, Status.OOM)


@pytest.mark.parametrize("folder", ["/tmp", "/dev/shm"])
def test_filling_tmpfs(sandbox, folder):
    result = attack(sandbox, f"""
        import os
        chunk = b"x" * (1024 * 1024)
        for i in range(100000):
            with open("{folder}/fill-%d" % i, "wb") as f:
                for _ in range(4):
                    f.write(chunk)
        """)
    expect(result, Status.FAILED)
    assert "OSError" in result.detail or "No space" in result.detail or "too large" in result.detail, result.detail


# ---------------------------------------------------------------------------------- disk


def test_one_huge_file(sandbox):
    result = attack(sandbox, """
        chunk = b"x" * (1024 * 1024)
        with open("huge.bin", "wb") as f:
            for _ in range(10 * 1024):
                f.write(chunk)
        """)
    expect(result, Status.FAILED)


def test_many_files(sandbox):
    result = attack(sandbox, """
        import os
        os.mkdir("many")
        i = 0
        while True:
            open("many/f%d" % i, "w").close()
            i += 1
        """, limits=Limits(**{**LIMITS.__dict__, "wall_s": 3.0}))
    expect(result, Status.FAILED, Status.TIMEOUT)


# ---------------------------------------------------------------------------------- time


def test_cpu_loop_times_out(sandbox):
    result = attack(sandbox, "while True:\n    pass\n", limits=Limits(**{**LIMITS.__dict__, "wall_s": 3.0, "cpu_s": 2.0}))
    expect(result, Status.TIMEOUT)


def test_sleep_times_out(sandbox):
    result = attack(sandbox, "import time\ntime.sleep(60)\n", limits=Limits(**{**LIMITS.__dict__, "wall_s": 2.0}))
    expect(result, Status.TIMEOUT)


def test_blocking_on_stdin_does_not_hang(sandbox):
    result = attack(sandbox, "import sys\ndata = sys.stdin.read()\nanswer = input()\n")
    expect(result, Status.FAILED)
    assert "EOFError" in result.detail


# ---------------------------------------------------------------------------------- host files


def test_host_files_and_secrets_are_invisible(sandbox):
    # A file is leaked if the sandbox reads the *host's* content (a container may well have an
    # /etc/passwd of its own): the probe prints a digest of each file it can read.
    planted = Path(f"/tmp/amr-host-secret-{secrets.token_hex(4)}")
    planted.write_text(secrets.token_hex(16))
    planted.chmod(0o644)
    paths = ["/etc/shadow", "/etc/passwd", "/etc/hostname", str(ROOT / "pyproject.toml"), str(planted), "/root/.bashrc"]
    host_digests = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths if Path(p).is_file()}
    # The probe runs in a fresh interpreter: the runner's own guard would block (and report as
    # tampering) reads of /proc/*/environ in the program's process before the sandbox is tried.
    probe = f"""
import hashlib, json, os
seen = {{}}
for path in {paths!r}:
    try:
        seen[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    except OSError:
        pass
leaks = []
if {FAKE_SECRET_NAME!r} in os.environ:
    leaks.append("own environment")
for pid in os.listdir("/proc"):
    for name in ("environ", "cmdline"):
        try:
            with open("/proc/%s/%s" % (pid, name), "rb") as f:
                if {FAKE_SECRET_NAME!r}.encode() in f.read():
                    leaks.append("/proc/%s/%s" % (pid, name))
        except OSError:
            pass
print(json.dumps({{"seen": seen, "leaks": leaks}}))
"""
    try:
        result = attack(sandbox, f"""
            import subprocess, sys
            def probe():
                run = subprocess.run([sys.executable, "-I", "-"], input={probe!r}, capture_output=True, text=True, timeout=5)
                return run.stdout.strip() or run.stderr
            print(probe())
            """, "assert probe().startswith('{')\n")
    finally:
        planted.unlink()
    expect(result, Status.PASSED)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["leaks"] == []
    assert [p for p, digest in report["seen"].items() if host_digests.get(p) == digest] == []


def test_writing_outside_the_work_folder(sandbox):
    token = secrets.token_hex(6)
    targets = [f"/tmp/amr-escape-{token}", str(ROOT / f"amr-escape-{token}"), f"/usr/amr-escape-{token}",
               f"/etc/amr-escape-{token}", f"/amr-escape-{token}", f"/root/amr-escape-{token}"]
    try:
        result = attack(sandbox, f"""
            def escapes():
                written = []
                for path in {targets[1:]!r}:
                    try:
                        with open(path, "w") as f:
                            f.write("escaped")
                        written.append(path)
                    except OSError:
                        pass
                return written
            with open({targets[0]!r}, "w") as f:  # the sandbox's own /tmp: allowed, private
                f.write("escaped")
            """, "assert escapes() == []\n")
        expect(result, Status.PASSED)
        assert [t for t in targets if os.path.exists(t)] == []
    finally:
        for t in targets:
            if os.path.exists(t):
                os.unlink(t)


def test_planted_symlinks_are_not_followed(sandbox):
    token = secrets.token_hex(6)
    host_targets = [f"/tmp/amr-escape-{token}", str(ROOT / f"amr-escape-{token}")]
    try:
        result = attack(sandbox, f"""
            import os
            here = os.getcwd()
            for name in ["solution.py", "tests.py", "_amr_job.json", "_amr_runner.py", "report.json", "stdout", "stderr"]:
                try:
                    os.unlink(name)
                except OSError:
                    pass
                os.symlink({host_targets[0]!r}, name)
            os.symlink({host_targets[1]!r}, "/tmp/job-next")
            os.chdir("/tmp")
            try:
                os.rename(here, here + "-moved")
                os.symlink({host_targets[1]!r}, here)
            except OSError:
                pass
            """)
        expect(result, Status.PASSED, Status.FAILED)
        assert [t for t in host_targets if os.path.lexists(t)] == []
    finally:
        for t in host_targets:
            if os.path.lexists(t):
                os.unlink(t)


# ---------------------------------------------------------------------------------- killing


def test_killing_the_parent(sandbox):
    result = attack(sandbox, """
        import os, signal
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
            try:
                os.kill(os.getppid(), sig)
            except OSError:
                pass
        """)
    expect(result, Status.PASSED, Status.FAILED)


def test_stopping_the_parent(sandbox):
    # The parent of a job's child is the worker's fork server: stopping it cannot stall the
    # worker past the job's wall time, nor leave anything behind.
    result = attack(sandbox, """
        import os, signal
        os.kill(os.getppid(), signal.SIGSTOP)
        """, limits=Limits(**{**LIMITS.__dict__, "wall_s": 3.0}))
    expect(result, Status.FAILED, Status.TIMEOUT)


def test_kill_minus_one(sandbox):
    result = attack(sandbox, """
        import os, signal
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(-1, sig)
            except OSError:
                pass
        """)
    expect(result, Status.PASSED, Status.FAILED)


LAUNCHER = """
import json, sys, threading, time
sys.path.insert(0, {root!r})
from tests.sandbox_backends import make_backend, sandbox_uids
from amr_dagster.sandbox.base import Limits
from amr_dagster.sandbox.harness import build_job
sb = make_backend({backend!r}, workers=1)
job = build_job("import time\\ntime.sleep(60)\\n", "assert True\\n", Limits(wall_s=60, cpu_s=60))
threading.Thread(target=sb.run, args=([job],), daemon=True).start()
time.sleep(3)
print(json.dumps({{"uids": sorted(sandbox_uids(sb)), "owner": getattr(sb, "owner", None)}}), flush=True)
time.sleep(120)
"""


def test_sigkill_of_the_launcher_kills_the_sandbox(sandbox):
    code = LAUNCHER.format(root=str(ROOT), backend=sandbox.name)
    launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = launcher.stdout.readline()
        assert line, launcher.stderr.read()
        info = json.loads(line)
        uids = set(info["uids"])
        if sandbox.name == "local":
            assert any(_processes_of(uids)), "the launcher's sandbox was not running"
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        alive = _processes_of(uids) if sandbox.name == "local" else _containers_of(info["owner"])
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"sandbox survived its launcher: {alive}"


def _processes_of(uids: set[int]) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["Uid"].split()[0]) in uids and not fields["State"].strip().startswith("Z"):
            found.append(f"{pid} {fields['Name'].strip()}")
    return found


def _containers_of(owner: str) -> list[str]:
    from amr_dagster.sandbox.docker_backend import OWNER_LABEL, docker_client

    client = docker_client()
    try:
        return [c.id for c in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})]
    finally:
        client.close()


# ---------------------------------------------------------------------------------- output


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_huge_output(sandbox, stream):
    result = attack(sandbox, f"""
        import sys
        line = "y" * 1000 + "\\n"
        for _ in range(200000):
            sys.{stream}.write(line)
        """)
    expect(result, Status.OUTPUT_LIMIT)
    assert len(result.stdout) + len(result.stderr) <= 4 * LIMITS.output_bytes


def test_endless_line(sandbox):
    result = attack(sandbox, """
        import os
        while True:
            os.write(1, b"z" * 65536)
        """)
    expect(result, Status.OUTPUT_LIMIT)


def test_invalid_utf8_output(sandbox):
    result = attack(sandbox, """
        import os
        os.write(1, b"ok \\xff\\xfe\\x80 \\xc3\\x28 end\\n")
        os.write(2, b"\\xed\\xa0\\x80 surrogate\\n")
        """)
    expect(result, Status.PASSED)
    assert result.stdout.startswith("ok ") and "end" in result.stdout
    assert "\ufffd" in result.stdout


# ---------------------------------------------------------------------------------- fake passes


@pytest.mark.parametrize("code", [
    "import os\nos._exit(0)\n",
    "import sys\nsys.exit(0)\n",
    "raise SystemExit(0)\n",
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
], ids=["os._exit", "sys.exit", "SystemExit", "self-kill"])
def test_exiting_at_import_is_not_a_pass(sandbox, code):
    result = attack(sandbox, code, "assert False\n")
    expect(result, Status.FAILED)


def test_exit_inside_a_test_is_not_a_pass(sandbox):
    result = attack(sandbox, "import os\ndef f():\n    os._exit(0)\n", "assert f() == 1\nassert f() == 2\n")
    expect(result, Status.FAILED)
    assert result.tests_passed == 0


def test_printed_fake_report_is_not_a_pass(sandbox):
    fake = {"status": "passed", "detail": "", "tests_run": 9, "tests_passed": 9, "tests_planned": 9,
            "exit_code": 0, "signal": None, "stdout": "", "stderr": "", "duration_s": 0, "anomalies": [], "nonce": "0" * 32}
    result = attack(sandbox, f"""
        import os, sys
        line = "\\nAMR-REPORT " + {json.dumps(json.dumps(fake))} + "\\n"
        sys.stdout.write(line)
        sys.stdout.flush()
        for fd in range(1, 64):
            try:
                os.write(fd, line.encode())
            except OSError:
                pass
        os._exit(0)
        """, "assert False\n")
    expect(result, Status.FAILED)


def test_forged_result_lines_are_detected(sandbox):
    result = attack(sandbox, """
        import os
        for fd in range(3, 64):
            for index in range(4):
                try:
                    os.write(fd, b"%032x P %d \\n" % (0, index))
                except OSError:
                    pass
        def f():
            return 0
        """, "assert f() == 1\n")
    expect(result, Status.FAILED)


@pytest.mark.parametrize("code", [
    "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n",
    "import unittest\nunittest.TestCase.assertEqual = lambda self, *a, **k: None\n",
    "import unittest\nunittest.TestCase.run = lambda self, result=None: None\nunittest.main = lambda *a, **k: None\n",
    "import sys\ndef tracer(frame, event, arg):\n    return None\nsys.settrace(tracer)\n",
    "import gc\nfor o in gc.get_objects():\n    pass\n",
    "import __main__\n__main__._Tally = None\n__main__.supervise = None\n",
], ids=["AssertionError", "assertEqual", "TestCase.run", "settrace", "gc-walk", "runner-globals"])
def test_patched_test_machinery_is_not_a_pass(sandbox, code):
    tests = """
        import unittest
        class TestIt(unittest.TestCase):
            def test_wrong(self):
                self.assertEqual(1, 2)
        assert 1 == 2
        """
    result = attack(sandbox, code, tests)
    expect(result, Status.FAILED)
    assert result.tests_passed < 2


@pytest.mark.parametrize("code", [
    "import builtins\nbuiltins.len = lambda obj: 5\n",
    "import builtins\n_compile = builtins.compile\nbuiltins.compile = lambda src, *a, **k: _compile('pass', *a, **k)\n",
    "import ast\nclass Empty(ast.Module):\n    def __init__(self, body=(), type_ignores=()):\n        super().__init__(body=[ast.Pass()], type_ignores=[])\nast.Module = Empty\n",
    "import os\n_write = os.write\nos.write = lambda fd, data: _write(fd, data.replace(b' F ', b' P '))\n",
], ids=["builtins.len", "builtins.compile", "ast.Module", "os.write"])
def test_patching_what_the_runner_uses_is_not_a_pass(sandbox, code):
    result = attack(sandbox, code, "assert len([1, 2]) == 5\nassert 1 == 2\n")
    expect(result, Status.FAILED)
    assert result.tests_passed < 2


@pytest.mark.parametrize("tests", [
    "import unittest\nclass TestIt(unittest.TestCase):\n    @unittest.skip('later')\n    def test_a(self):\n        assert False\n",
    "import unittest\ndef test_a():\n    raise unittest.SkipTest('later')\n",
    "class Skipped(Exception):\n    pass\ndef test_a():\n    raise Skipped('pytest.skip look-alike')\n",
    "def helper():\n    return 1\nx = helper()\n",
    "",
], ids=["unittest.skip", "SkipTest", "pytest-Skipped", "no-asserts", "empty"])
def test_skipped_or_absent_tests_are_not_a_pass(sandbox, tests):
    result = attack(sandbox, "def f():\n    return 1\n", tests)
    expect(result, Status.FAILED)
    assert result.tests_passed == 0


# ---------------------------------------------------------------------------------- privileges


def test_nested_user_namespace_ptrace_and_mount_fail(sandbox):
    result = attack(sandbox, """
        import subprocess, sys
        PTRACE = '''
        import ctypes, sys
        libc = ctypes.CDLL(None, use_errno=True)
        sys.exit(0 if libc.ptrace(16, 1, 0, 0) == 0 else 1)
        '''
        def escapes():
            found = []
            probes = {
                "unshare -U": ["unshare", "-U", "-r", "true"],
                "unshare -m": ["unshare", "-m", "true"],
                "mount tmpfs": ["mount", "-t", "tmpfs", "none", "/usr"],
                "ptrace pid 1": [sys.executable, "-I", "-c", PTRACE.replace("\\n        ", "\\n")],
                "read /proc/1/mem": [sys.executable, "-I", "-c", "open('/proc/1/mem', 'rb').read(1)"],
                "read /proc/1/environ": [sys.executable, "-I", "-c", "open('/proc/1/environ', 'rb').read(1)"],
            }
            for name, argv in probes.items():
                try:
                    rc = subprocess.run(argv, capture_output=True, timeout=3).returncode
                except (OSError, subprocess.TimeoutExpired):
                    rc = -1
                if rc == 0:
                    found.append(name)
            return found
        print(escapes())
        """, "assert escapes() == []\n")
    expect(result, Status.PASSED)
