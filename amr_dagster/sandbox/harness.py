"""Host side of the test harness: builds sandbox jobs from (code, tests), turns the in-sandbox
runner's reports into honest verdicts, and retries infrastructure errors.

Every backend runs the same harness-owned runner (the ``sandbox/runner`` package, packed into one
script by ``sandbox/packing.py`` and copied into the job as ``_amr_runner.py``); the package's
docstring holds the threat model. A backend can drive it two ways:

* one-shot: write ``job.files`` into a fresh work folder, run ``job.command`` there with
  ``job.stdin`` on stdin (it carries the per-run nonce, which the runner reads only after every
  process running user code is dead), capture stdout, then ``parse_report(job, stdout, ...)``.
* worker: start ``serve_command()`` once per worker (pid 1 of its own pid namespace so it can
  kill every leftover process after a job), then per job write ``encode_request(job)`` to its
  stdin and read one frame from its stdout with ``read_frame``; ``decode_report(job, frame)``.
  A result whose ``anomalies`` is non-empty means: replace the worker before its next job.

A program passes only if the runner reports >= 1 test ran and every test passed, under the
job's own nonce; anything else is a failure, and a missing/forged report is ``infra_error``.

Threat model in short (details in ``sandbox/runner``): the program and its tests are hostile. The
runner's supervisor never executes them; it forks a child that does, which loses every channel
to the supervisor except a result pipe before user code runs; the supervisor counts only
token-tagged per-test lines in the order of the plan it parsed itself, so exiting early
(``os._exit(0)``, ``sys.exit``), skipping, printing a fake report or writing forged lines is
never a pass; patches of ``builtins``/``unittest``/the runner are detected or have no effect.
The nonce reaches the sandbox only after every user process of the job is dead. What remains
possible is in-process lying about the program's own results (e.g. an ``__eq__`` that is always
true): contained by the sandbox, not preventable while tests share the program's interpreter.
"""

from __future__ import annotations

import base64
import os
import dataclasses
import json
import secrets
from typing import Callable, Sequence

from amr_dagster.sandbox.base import Limits, Sandbox, SandboxJob, SandboxResult, Status
from amr_dagster.sandbox.packing import packed_runner
from amr_dagster.sandbox.runner.wire import FRAME_HEADER, MANIFEST_FILE, PROGRAM_FILE, REPORT_PREFIX, TESTS_FILE

RUNNER_FILE = "_amr_runner.py"
# ``-I``: ignore PYTHON* variables, user site-packages and the current folder on sys.path.
RUNNER_COMMAND: tuple[str, ...] = ("python3", "-I", RUNNER_FILE)
MAX_REPORT_BYTES = 64 << 20


def runner_source() -> str:
    """The runner's source text, as shipped into every sandbox (packed once per process)."""
    return packed_runner().source


def serve_command(python: str = "python3", runner_path: str = "/" + RUNNER_FILE, scratch: Sequence[str] = ("/tmp",)) -> tuple[str, ...]:
    """The worker command: the runner in server mode, reading frames on stdin.

    ``runner_path`` is where the backend put ``runner_source()`` inside the sandbox;
    ``scratch`` folders (the first holds each job's work folder) are emptied after every job.
    """
    command = [python, "-I", runner_path, "--serve"]
    for folder in scratch:
        command += ["--scratch", folder]
    return tuple(command)


def limits_dict(limits: Limits) -> dict:
    return dataclasses.asdict(limits)


def build_job(code: str, tests: str, limits: Limits = Limits(), job_id: str = "") -> SandboxJob:
    """A sandbox job that runs ``code`` and then ``tests`` under the harness-owned runner."""
    manifest = {"program": PROGRAM_FILE, "tests": TESTS_FILE, "limits": limits_dict(limits), "job_id": job_id}
    return SandboxJob(
        files={
            RUNNER_FILE: runner_source(),
            MANIFEST_FILE: json.dumps(manifest),
            PROGRAM_FILE: code,
            TESTS_FILE: tests,
        },
        command=RUNNER_COMMAND,
        limits=limits,
        stdin=_new_nonce() + b"\n",
        job_id=job_id,
    )


def _new_nonce() -> bytes:
    return secrets.token_hex(16).encode()


def renew_nonce(job: SandboxJob) -> SandboxJob:
    """The same job under a fresh nonce (used for every retry)."""
    return dataclasses.replace(job, stdin=_new_nonce() + b"\n")


def job_nonce(job: SandboxJob) -> str:
    return job.stdin.decode("ascii", "replace").strip()


def is_harness_job(job: SandboxJob) -> bool:
    return MANIFEST_FILE in job.files and RUNNER_FILE in job.files and bool(job_nonce(job))


def infra_error(job: SandboxJob, detail: str, duration_s: float = 0.0, stdout: str = "", stderr: str = "") -> SandboxResult:
    return SandboxResult(
        status=Status.INFRA_ERROR, detail=f"infra: {detail}", job_id=job.job_id, duration_s=duration_s,
        stdout=stdout, stderr=stderr, anomalies=(Status.INFRA_ERROR.value,),
    )


def result_from_report(job: SandboxJob, report: dict, nonce: str, duration_s: float | None = None) -> SandboxResult:
    """A verdict from the runner's report, checked against the job's nonce."""
    if not secrets.compare_digest(nonce.encode(), job_nonce(job).encode()):
        return infra_error(job, "report nonce does not match this job")
    try:
        status = Status(report["status"])
        run, passed = int(report["tests_run"]), int(report["tests_passed"])
        planned = int(report.get("tests_planned", run))
    except (KeyError, ValueError, TypeError) as exc:
        return infra_error(job, f"malformed report: {exc!r}")
    detail = str(report.get("detail", ""))
    if status is Status.PASSED and not (run >= 1 and passed == run == planned):
        status, detail = Status.FAILED, f"inconsistent pass report ({passed}/{run} of {planned}): {detail}"
    return SandboxResult(
        status=status,
        exit_code=report.get("exit_code"),
        signal=report.get("signal"),
        stdout=str(report.get("stdout", "")),
        stderr=str(report.get("stderr", "")),
        tests_run=run,
        tests_passed=passed,
        duration_s=float(report.get("duration_s", 0.0) if duration_s is None else duration_s),
        detail=detail,
        job_id=job.job_id,
        anomalies=tuple(str(a) for a in report.get("anomalies", ())),
    )


def parse_report(
    job: SandboxJob,
    stdout: bytes | str,
    *,
    exit_code: int | None = None,
    signal: int | None = None,
    stderr: bytes | str = b"",
    duration_s: float | None = None,
) -> SandboxResult:
    """The verdict of a one-shot run from the runner's stdout (its last ``AMR-REPORT`` line).

    Whatever else the process printed is ignored; a missing, unparsable or wrong-nonce report
    is ``infra_error`` (the runner itself broke or was killed), never a pass.
    """
    text = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else stdout
    err = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    marker = f"\n{REPORT_PREFIX} "
    position = ("\n" + text).rfind(marker)
    if position < 0:
        how = f"exit code {exit_code}" if signal is None else f"signal {signal}"
        return infra_error(job, f"no runner report ({how})", duration_s or 0.0, text[-2000:], err[-2000:])
    line = ("\n" + text)[position + len(marker):].split("\n", 1)[0]
    try:
        report = json.loads(line)
    except json.JSONDecodeError as exc:
        return infra_error(job, f"unparsable runner report: {exc}", duration_s or 0.0)
    if not isinstance(report, dict):
        return infra_error(job, "runner report is not an object", duration_s or 0.0)
    return result_from_report(job, report, str(report.get("nonce", "")), duration_s)



def result_from_run(
    job: SandboxJob,
    *,
    exit_code: int | None,
    signal: int | None,
    stdout: bytes | str,
    stderr: bytes | str = b"",
    timed_out: bool = False,
    output_limit: bool = False,
    oom: bool = False,
    duration_s: float = 0.0,
) -> SandboxResult:
    """The verdict of a one-shot run, given what the backend itself observed from outside.

    A timeout, OOM kill or output flood the backend saw wins (the runner could not report);
    otherwise the runner's report decides (``parse_report``).
    """
    observed = (
        (Status.TIMEOUT, "timeout: killed by the backend", timed_out),
        (Status.OOM, "oom: killed by the backend's memory limit", oom),
        (Status.OUTPUT_LIMIT, "output_limit: the run's output exceeded the backend's cap", output_limit),
    )
    for status, detail, happened in observed:
        if happened:
            out = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else stdout
            err = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
            cap = job.limits.output_bytes
            return SandboxResult(
                status=status, exit_code=exit_code, signal=signal, stdout=out[:cap], stderr=err[:cap],
                duration_s=duration_s, detail=detail, job_id=job.job_id, anomalies=(status.value,),
            )
    return parse_report(job, stdout, exit_code=exit_code, signal=signal, stderr=stderr, duration_s=duration_s)


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(FRAME_HEADER, "big") + payload


def encode_request(job: SandboxJob) -> bytes:
    """What a worker reads for one job: the job frame, then the nonce frame."""
    files = {
        name: content if isinstance(content, str) else {"b64": base64.b64encode(content).decode("ascii")}
        for name, content in job.files.items()
        if name != RUNNER_FILE
    }
    request = json.dumps({"job_id": job.job_id, "files": files}).encode("utf-8")
    return _frame(request) + _frame(job_nonce(job).encode("ascii"))


def read_frame(read_exact: Callable[[int], bytes]) -> bytes:
    """One length-prefixed frame; ``read_exact(n)`` must return exactly n bytes or raise EOFError."""
    size = int.from_bytes(read_exact(FRAME_HEADER), "big")
    if size > MAX_REPORT_BYTES:
        raise ValueError(f"report frame of {size} bytes is too large")
    return read_exact(size)


def decode_report(job: SandboxJob, frame: bytes, duration_s: float | None = None) -> SandboxResult:
    """The verdict from one worker report frame (``nonce\\n{json}``)."""
    nonce, _, body = frame.partition(b"\n")
    try:
        report = json.loads(body)
    except json.JSONDecodeError as exc:
        return infra_error(job, f"unparsable worker report: {exc}")
    if not isinstance(report, dict):
        return infra_error(job, "worker report is not an object")
    return result_from_report(job, report, nonce.decode("ascii", "replace"), duration_s)


def run_with_retries(sandbox: Sandbox, jobs: Sequence[SandboxJob], attempts: int = 3) -> list[SandboxResult]:
    """Run jobs, re-running (under a fresh nonce) those that end in ``infra_error``.

    Every caller goes through here: an infrastructure failure is never a failing sample. After
    ``attempts`` tries a job keeps its ``infra_error`` verdict (callers keep such rows, marked).
    """
    results: list[SandboxResult | None] = [None] * len(jobs)
    todo = list(range(len(jobs)))
    for attempt in range(max(1, attempts)):
        if not todo:
            break
        batch = [jobs[i] if attempt == 0 else renew_nonce(jobs[i]) for i in todo]
        answers = sandbox.run(batch)
        for i, result in zip(todo, answers):
            results[i] = result
        todo = [i for i, result in zip(todo, answers) if result.status is Status.INFRA_ERROR]
    return [r for r in results if r is not None]


SELF_TEST_LIMITS = Limits(wall_s=20.0, cpu_s=10.0)


def isolation_self_test(sandbox: Sandbox) -> None:
    """Fail closed: raise ``SandboxUnavailable`` unless ``sandbox`` really runs and isolates.

    Four jobs: one must pass, one must fail, a TCP connect to a listener this process opens on
    127.0.0.1 must be refused, and a file this process writes must be unreadable inside.
    """
    import socket
    import tempfile

    from amr_dagster.sandbox.base import SandboxUnavailable

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    secret = secrets.token_hex(16)
    with tempfile.NamedTemporaryFile("w", prefix="amr-selftest-", suffix=".txt", delete=False) as f:
        f.write(secret)
        secret_path = f.name
    os.chmod(secret_path, 0o644)
    add = "def add(a, b):\n    return a + b\n"
    checks = {
        "runs a passing program": (build_job(add, "assert add(1, 2) == 3\n", SELF_TEST_LIMITS), Status.PASSED),
        "fails a failing program": (build_job(add, "assert add(1, 2) == 4\n", SELF_TEST_LIMITS), Status.FAILED),
        "blocks the network": (build_job(
            "import socket\n"
            "def reaches_host():\n"
            "    try:\n"
            f"        socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
            "        return True\n"
            "    except OSError:\n"
            "        return False\n",
            "assert reaches_host() is False\n", SELF_TEST_LIMITS), Status.PASSED),
        "hides host files": (build_job(
            "def host_secret():\n"
            "    try:\n"
            f"        return open({secret_path!r}).read()\n"
            "    except OSError:\n"
            "        return None\n",
            f"assert host_secret() != {secret!r}\n", SELF_TEST_LIMITS), Status.PASSED),
    }
    try:
        results = run_with_retries(sandbox, [job for job, _ in checks.values()], attempts=2)
    except Exception as exc:
        raise SandboxUnavailable(f"{getattr(sandbox, 'name', sandbox)}: self-test could not run: {exc!r}") from exc
    finally:
        listener.close()
        os.unlink(secret_path)
    problems = [
        f"{what}: expected {expected.value}, got {result.status.value} ({result.detail})"
        for (what, (_, expected)), result in zip(checks.items(), results)
        if result.status is not expected
    ]
    if problems:
        raise SandboxUnavailable(f"{getattr(sandbox, 'name', sandbox)} self-test failed: " + "; ".join(problems))
