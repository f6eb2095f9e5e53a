"""The harness: test planning, report parsing, retries, the local backend's worker life cycle,
the one-shot runner mode inside a real bwrap, and backend selection (``auto``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from amr_dagster.sandbox import harness
from amr_dagster.sandbox.auto import open_sandbox
from amr_dagster.sandbox.base import Limits, SandboxResult, SandboxUnavailable, Status
from amr_dagster.sandbox.bubblewrap import BubblewrapSandbox
from amr_dagster.sandbox.runner import child, plan
from tests.sandbox_backends import make_backend

# ----------------------------------------------------------------------------- the test plan


@pytest.mark.parametrize("tests,expected", [
    ("assert f(1) == 1\nassert f(2) == 2\n", 2),
    ("def check(candidate):\n    assert candidate(1) == 1\n    assert candidate(2) == 2\n\ncheck(f)\n", 1),
    ("def test_a():\n    assert f(1)\n\ndef test_b():\n    assert f(2)\n\ndef helper():\n    return 3\n", 2),
    ("def test_a():\n    assert f(1)\n\ntest_a()\n", 1),
    ("import unittest\nclass TestF(unittest.TestCase):\n    def setUp(self):\n        self.x = 1\n"
     "    def test_one(self):\n        self.assertEqual(f(1), 1)\n    def test_two(self):\n        pass\n"
     "    def helper(self):\n        pass\n\nif __name__ == '__main__':\n    unittest.main()\n", 2),
    ("if __name__ == '__main__':\n    assert f(1) == 1\n    assert f(2) == 2\n", 2),
    ("for x in range(3):\n    assert f(x) == x\n", 1),
    ("x = f(1)\nprint(x)\n", 0),
    ("", 0),
    ("def broken(:\n", 0),
])
def test_plan_counts_tests(tests, expected):
    assert plan.count_planned_tests(tests) == expected


def test_foreign_runner_calls_are_not_executed():
    _, steps = plan.plan_tests("import unittest\nunittest.main()\nassert True\n")
    assert [kind for kind, _, _ in steps] == ["setup", "test"]


def test_the_supervisor_compiles_and_keeps_compile_errors_for_the_child():
    stmts, _ = plan.plan_tests("x = 1\nreturn x\nassert x == 1\n")  # parses, does not compile
    compiled = plan.compile_statements(stmts)
    assert compiled[1] == ("SyntaxError", "'return' outside function (tests.py, line 2)")
    assert all(isinstance(code, type(test_plan_counts_tests.__code__)) for code in (compiled[0], compiled[2]))
    assert plan.compile_program("def f(:\n")[0] == "SyntaxError"


def test_watched_names_are_what_the_tests_name():
    stmts, _ = plan.plan_tests(
        "import unittest\n"
        "class TestF(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(sorted([2, 1]), [1, 2])\n"
        "def check(candidate):\n    assert abs(candidate(1)) == len('a')\n"
        "check(f)\n")
    names = child.watched_names(plan.compile_statements(stmts))
    for name in ("assertEqual", "sorted", "abs", "len", "check", "setUp", "tearDown", "__init__"):
        assert name in names
    assert "print" not in names and "all" not in names


# ----------------------------------------------------------------------------- report parsing


def _report(**overrides) -> dict:
    report = {"status": "passed", "detail": "1/1 tests passed", "tests_run": 1, "tests_passed": 1,
              "tests_planned": 1, "exit_code": 0, "signal": None, "stdout": "", "stderr": "",
              "duration_s": 0.01, "anomalies": []}
    report.update(overrides)
    return report


def test_parse_report_needs_the_jobs_nonce():
    job = harness.build_job("x = 1\n", "assert x == 1\n")
    good = _report(nonce=harness.job_nonce(job))
    assert harness.parse_report(job, f"noise\nAMR-REPORT {json.dumps(good)}\n").status is Status.PASSED
    forged = _report(nonce="0" * 32)
    result = harness.parse_report(job, f"AMR-REPORT {json.dumps(forged)}\n")
    assert result.status is Status.INFRA_ERROR and "nonce" in result.detail


def test_parse_report_takes_the_last_report_and_rejects_missing_ones():
    job = harness.build_job("x = 1\n", "assert x == 1\n")
    nonce = harness.job_nonce(job)
    early = _report(nonce=nonce)
    late = _report(nonce=nonce, status="failed", tests_passed=0, detail="0/1")
    assert harness.parse_report(job, f"AMR-REPORT {json.dumps(early)}\nAMR-REPORT {json.dumps(late)}\n").status is Status.FAILED
    assert harness.parse_report(job, "just output\n", exit_code=0).status is Status.INFRA_ERROR
    assert harness.parse_report(job, "AMR-REPORT {not json\n").status is Status.INFRA_ERROR


def test_a_pass_without_tests_is_not_a_pass():
    job = harness.build_job("x = 1\n", "assert x == 1\n")
    zero = _report(nonce=harness.job_nonce(job), tests_run=0, tests_passed=0, tests_planned=0)
    assert harness.parse_report(job, f"AMR-REPORT {json.dumps(zero)}\n").status is Status.FAILED


def test_backend_observations_win_over_the_report():
    job = harness.build_job("x = 1\n", "assert x == 1\n")
    good = f"AMR-REPORT {json.dumps(_report(nonce=harness.job_nonce(job)))}\n"
    assert harness.result_from_run(job, exit_code=None, signal=9, stdout=good, timed_out=True).status is Status.TIMEOUT
    assert harness.result_from_run(job, exit_code=None, signal=9, stdout=good, oom=True).status is Status.OOM
    assert harness.result_from_run(job, exit_code=0, signal=None, stdout=good).status is Status.PASSED


def test_worker_frames_round_trip():
    job = harness.build_job("x = 1\n", "assert x == 1\n", job_id="j1")
    request = harness.encode_request(job)
    size = int.from_bytes(request[:8], "big")
    body = json.loads(request[8:8 + size])
    assert body["job_id"] == "j1" and harness.RUNNER_FILE not in body["files"]
    nonce_frame = request[8 + size:]
    assert nonce_frame[8:].decode() == harness.job_nonce(job)
    frame = harness.job_nonce(job).encode() + b"\n" + json.dumps(_report()).encode()
    assert harness.decode_report(job, frame).status is Status.PASSED
    assert harness.decode_report(harness.renew_nonce(job), frame).status is Status.INFRA_ERROR


class _FlakySandbox:
    """Answers infra_error for the first ``failures`` runs of each job (retry logic only)."""

    name = "flaky"

    def __init__(self, failures: int):
        self.failures = failures
        self.seen: dict[str, list[str]] = {}

    def run(self, jobs):
        out = []
        for job in jobs:
            nonces = self.seen.setdefault(job.job_id, [])
            nonces.append(harness.job_nonce(job))
            status = Status.INFRA_ERROR if len(nonces) <= self.failures else Status.PASSED
            out.append(SandboxResult(status=status, tests_run=1, tests_passed=1, job_id=job.job_id))
        return out


def test_run_with_retries_retries_infra_errors_under_fresh_nonces():
    jobs = [harness.build_job("x = 1\n", "assert x == 1\n", job_id=f"j{i}") for i in range(3)]
    flaky = _FlakySandbox(failures=2)
    results = harness.run_with_retries(flaky, jobs, attempts=3)
    assert [r.status for r in results] == [Status.PASSED] * 3
    assert all(len(set(n)) == 3 for n in flaky.seen.values())
    stubborn = harness.run_with_retries(_FlakySandbox(failures=5), jobs, attempts=3)
    assert [r.status for r in stubborn] == [Status.INFRA_ERROR] * 3


# ----------------------------------------------------------------------------- real verdicts


@pytest.fixture(scope="module")
def local():
    sandbox = make_backend("local", workers=2)
    yield sandbox
    sandbox.close()


def run_one(sandbox, code: str, tests: str, limits: Limits = Limits()) -> SandboxResult:
    [result] = sandbox.run([harness.build_job(code, tests, limits)])
    return result


def test_verdict_shapes_on_the_local_backend(local):
    code = "def f(x):\n    return x + 1\n"
    pytest_style = "from solution import f\n\ndef test_one():\n    assert f(1) == 2\n\ndef test_two():\n    assert f(2) == 3\n"
    unittest_style = ("import unittest\nclass TestF(unittest.TestCase):\n    @classmethod\n    def setUpClass(cls):\n"
                      "        cls.base = 1\n    def setUp(self):\n        self.y = f(self.base)\n"
                      "    def test_y(self):\n        self.assertEqual(self.y, 2)\n"
                      "    def test_raises(self):\n        with self.assertRaises(TypeError):\n            f('a')\n")
    results = local.run([
        harness.build_job(code, pytest_style),
        harness.build_job(code, unittest_style),
        harness.build_job(code, "assert f(1) == 2\nassert f(1) == 3\nassert f(2) == 3\n"),
        harness.build_job(code, "def test_fixture(tmp_path):\n    assert tmp_path\n"),
        harness.build_job("raise ValueError('boom')\n", "assert True\n"),
        harness.build_job(code, "assert f(1) ==\n"),
        harness.build_job(code, "import asyncio\nasync def test_async():\n    await asyncio.sleep(0)\n    assert f(0) == 1\n"),
    ])
    got = [(r.status, r.tests_run, r.tests_passed) for r in results]
    assert got == [
        (Status.PASSED, 2, 2),
        (Status.PASSED, 2, 2),
        (Status.FAILED, 3, 2),
        (Status.FAILED, 1, 0),
        (Status.FAILED, 0, 0),
        (Status.FAILED, 0, 0),
        (Status.PASSED, 1, 1),
    ], [r.detail for r in results]
    assert "line 2" in results[2].detail
    assert "needs fixtures" in results[3].detail
    assert "ValueError: boom" in results[4].detail
    assert "do not parse" in results[5].detail


def test_compile_errors_found_by_the_supervisor_fail_where_they_are(local):
    code = "def f(x):\n    return x + 1\n"
    results = local.run([
        harness.build_job(code, "assert f(1) == 2\nreturn 3\nassert f(2) == 3\n"),
        harness.build_job("def f(x):\n    return x +\n", "assert f(1) == 2\n"),
    ])
    assert [(r.status, r.tests_run, r.tests_passed) for r in results] == [(Status.FAILED, 1, 1), (Status.FAILED, 0, 0)]
    assert "SyntaxError" in results[0].detail and "outside function" in results[0].detail
    assert "program raised SyntaxError" in results[1].detail


def test_programs_see_their_own_source_and_module(local):
    code = "import inspect\ndef f():\n    return 1\n"
    tests = ("import solution, sys\n"
             "assert 'return 1' in inspect.getsource(f)\n"
             "assert solution.f is f and sys.argv == ['solution.py']\n"
             "assert open('tests.py').read().startswith('import solution')\n")
    [result] = local.run([harness.build_job(code, tests)])
    assert (result.status, result.tests_run) == (Status.PASSED, 3), result.detail


def test_pytest_style_tests_without_pytest_installed(local):
    code = "def div(a, b):\n    return a / b\n"
    tests = ("import pytest\nfrom solution import div\n\n"
             "def test_zero():\n    with pytest.raises(ZeroDivisionError):\n        div(1, 0)\n\n"
             "def test_match():\n    with pytest.raises(ZeroDivisionError, match='division'):\n        div(1, 0)\n\n"
             "def test_approx():\n    assert div(1, 3) == pytest.approx(0.3333333)\n\n"
             "@pytest.mark.parametrize('a,b,q', [(4, 2, 2), (9, 3, 3)])\n"
             "def test_table(a, b, q):\n    assert div(a, b) == q\n")
    wrong_row = tests.replace("(9, 3, 3)", "(9, 3, 4)")
    skipped = tests + "\n@pytest.mark.skip(reason='later')\ndef test_later():\n    assert False\n"
    no_raise = "import pytest\ndef test_no_raise():\n    with pytest.raises(ValueError):\n        div(1, 1)\n"
    results = local.run([harness.build_job(code, t) for t in (tests, wrong_row, skipped, no_raise)])
    got = [(r.status, r.tests_run, r.tests_passed) for r in results]
    assert got == [(Status.PASSED, 4, 4), (Status.FAILED, 4, 3), (Status.FAILED, 5, 4), (Status.FAILED, 1, 0)], [r.detail for r in results]
    assert "skipped" in results[2].detail and "DID NOT RAISE" in results[3].detail


def test_output_and_binary_files_reach_the_program(local):
    job = harness.build_job("import sys\nprint('hello')\nprint('warn', file=sys.stderr)\n", "assert open('data.bin', 'rb').read() == bytes(range(256))\n")
    job = harness.SandboxJob(files={**job.files, "data.bin": bytes(range(256))}, command=job.command, limits=job.limits, stdin=job.stdin)
    [result] = local.run([job])
    assert result.status is Status.PASSED, result.detail
    assert result.stdout == "hello\n" and result.stderr == "warn\n"


def test_a_worker_is_replaced_after_an_anomaly_and_recycled():
    sandbox = BubblewrapSandbox(workers=1, recycle_after=3)
    try:
        sandbox.run([harness.build_job("x = 1\n", "assert x == 1\n")])
        first = sandbox._workers[0].proc.pid
        sandbox.run([harness.build_job("import time\ntime.sleep(30)\n", "assert True\n", Limits(wall_s=1.0))])
        assert sandbox._workers[0].proc is None  # killed after the timeout
        results = sandbox.run([harness.build_job("x = 1\n", "assert x == 1\n")] * 4)
        assert all(r.status is Status.PASSED for r in results)
        assert sandbox._workers[0].proc.pid != first
        assert sandbox._workers[0].jobs_done == 1  # recycled after 3 jobs
    finally:
        sandbox.close()


def test_non_harness_jobs_are_refused(local):
    job = harness.SandboxJob(files={"a.py": "print(1)"}, command=("python3", "a.py"))
    [result] = local.run([job])
    assert result.status is Status.INFRA_ERROR


# ----------------------------------------------------------------------------- one-shot mode


def _one_shot_in_bwrap(job) -> SandboxResult:
    """Run ``job.command`` the one-shot way (as the Docker backend does) in a throwaway bwrap."""
    work = Path(tempfile.mkdtemp(prefix="amr-one-shot-"))  # reachable by the unprivileged uid
    os.chmod(work, 0o755)
    for name, content in job.files.items():
        (work / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    uid = 1_199_000 + os.getpid() % 1000
    os.chown(work, uid, uid)
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--setenv", "PATH", "/usr/bin", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin", "--proc", "/proc",
            "--dev", "/dev", "--tmpfs", "/tmp", "--bind", str(work), "/work", "--chdir", "/work",
            "--as-pid-1", *job.command]
    try:
        done = subprocess.run(argv, input=job.stdin, capture_output=True, timeout=60, user=uid, group=uid, extra_groups=[])
    finally:
        shutil.rmtree(work)
    return harness.parse_report(job, done.stdout, exit_code=done.returncode, stderr=done.stderr)


@pytest.mark.parametrize("code,tests,status", [
    ("def f():\n    return 1\n", "assert f() == 1\n", Status.PASSED),
    ("def f():\n    return 1\n", "assert f() == 2\n", Status.FAILED),
    ("import os\nos._exit(0)\n", "assert False\n", Status.FAILED),
])
def test_one_shot_mode_in_a_real_sandbox(code, tests, status):
    result = _one_shot_in_bwrap(harness.build_job(code, tests))
    assert result.status is status, result.detail


STALLED_FORK_SERVER = """
import json, os, signal, sys, time
sys.path.insert(0, {root!r})
from amr_dagster.sandbox.base import Limits
from amr_dagster.sandbox.harness import limits_dict
from amr_dagster.sandbox.runner.fork_server import ForkServer
from amr_dagster.sandbox.runner.supervisor import supervise
os.mkdir("/tmp/job")
os.chdir("/tmp/job")
fork_server = ForkServer("/tmp/job")
os.kill(fork_server.pid, signal.SIGSTOP)
started = time.monotonic()
report = supervise("x = 1\\n", "assert x == 1\\n", limits_dict(Limits(wall_s=1.0)), fork_server=fork_server)
print(json.dumps({{"status": report["status"], "detail": report["detail"], "s": time.monotonic() - started}}))
"""


def test_a_fork_server_stopped_before_it_reports_the_pid_cannot_hang_the_supervisor():
    # A job's child runs as soon as it is forked, so on a loaded machine it can stop its
    # parent (the fork server) before the fork server has sent the child's pid (CI saw this:
    # the worker never answered). Here the fork server is stopped before the job is sent; the
    # supervisor, pid 1 of a real pid namespace as in a worker, must still end the job at its
    # wall time.
    root = str(Path(__file__).resolve().parents[2])
    argv = ["bwrap", "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
            "--dev", "/dev", "--tmpfs", "/tmp", "--as-pid-1", sys.executable, "-c", STALLED_FORK_SERVER.format(root=root)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)  # a hang fails here
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == Status.TIMEOUT.value, report


# ----------------------------------------------------------------------------- auto


def test_open_sandbox_local_self_tests():
    sandbox = open_sandbox("local", workers=1)
    try:
        assert sandbox.name == "local"
        [result] = sandbox.run([harness.build_job("x = 2\n", "assert x == 2\n")])
        assert result.status is Status.PASSED
    finally:
        sandbox.close()


def test_auto_without_docker_engine_uses_bubblewrap(monkeypatch):
    import amr_dagster.sandbox.auto as auto

    monkeypatch.setattr(auto, "docker_engine_answers", lambda timeout=2.0: False)
    sandbox = auto.open_sandbox("auto", workers=1, image="amr-sandbox:py3")  # a Docker-only option
    try:
        assert sandbox.name == "local"
    finally:
        sandbox.close()


def test_auto_fails_closed_when_nothing_isolates(monkeypatch):
    import amr_dagster.sandbox.auto as auto

    monkeypatch.setattr(auto, "docker_engine_answers", lambda timeout=2.0: False)
    with pytest.raises(SandboxUnavailable, match="refusing to run"):
        auto.open_sandbox("auto", workers=1, local_opts={"bwrap": "/nonexistent/bwrap"})
    with pytest.raises(ValueError):
        auto.open_sandbox("subprocess")


def test_self_test_rejects_a_sandbox_that_does_not_isolate(tmp_path):
    """A 'sandbox' that runs jobs unisolated (in a plain bwrap sharing the host network and
    files) must fail the self-test: the network and host-file probes catch it."""

    class Leaky:
        name = "leaky"

        def run(self, jobs):
            results = []
            for i, job in enumerate(jobs):
                work = tmp_path / f"w{i}"
                work.mkdir()
                for fname, content in job.files.items():
                    (work / fname).write_text(content)
                argv = ["bwrap", "--dev-bind", "/", "/", "--chdir", str(work), "--die-with-parent", *job.command]
                done = subprocess.run(argv, input=job.stdin, capture_output=True, timeout=60)
                results.append(harness.parse_report(job, done.stdout, exit_code=done.returncode))
            return results

        def close(self):
            pass

    with pytest.raises(SandboxUnavailable) as failure:
        harness.isolation_self_test(Leaky())
    assert "blocks the network" in str(failure.value) and "hides host files" in str(failure.value)
