"""The supervisor: has the job's child forked, watches it, counts its token-tagged lines, decides."""

from __future__ import annotations

import fcntl
import marshal
import os
import select
import signal
import sys
import time

from amr_dagster.sandbox.base import Status

from .child import child_main, prepare_job_process, watched_names
from .cleanup import kill_descendants
from .fork_server import ForkServer
from .plan import compile_program, compile_statements, plan_tests
from .wire import DETAIL_CHARS, build_report, write_all


MAX_RESULT_BYTES = 1 << 20
RESULT_POLL_S = 0.05


class _Tally:
    """The supervisor's count, fed only by well-formed, token-tagged lines in plan order."""

    def __init__(self, steps: list[tuple], token: str):
        self.steps = steps
        self.token = token.encode()
        self.test_indexes = [i for i, s in enumerate(steps) if s[0] != "setup"]
        self.outcomes: dict[int, str] = {}
        self.open_test: int | None = None
        self.last_index = -1
        self.done = False
        self.oom = False
        self.error = ""
        self.tamper = ""
        self.runner_error = ""
        self.first_failure = ""

    def violation(self, what: str) -> None:
        if not self.tamper:
            self.tamper = f"protocol violation: {what}"

    def feed(self, line: bytes) -> None:
        token, _, rest = line.partition(b" ")
        if token != self.token:
            self.violation("line without the job token")
            return
        kind, _, rest = rest.decode("utf-8", "replace").partition(" ")
        index_text, _, detail = rest.partition(" ")
        try:
            index = int(index_text)
        except ValueError:
            self.violation("malformed line")
            return
        if self.done:
            self.violation("line after done")
        elif kind == "B":
            if self.open_test is not None or index <= self.last_index or index not in self.test_indexes:
                self.violation(f"unexpected begin of step {index}")
            else:
                self.open_test, self.last_index = index, index
        elif kind in "PFSM" and len(kind) == 1 and self.open_test is not None:
            if index != self.open_test:
                self.violation(f"outcome for step {index} while step {self.open_test} runs")
                return
            self.outcomes[index] = kind
            self.open_test = None
            if kind == "M":
                self.oom = True
            if kind != "P" and not self.first_failure:
                self.first_failure = {"F": "", "S": "skipped: ", "M": "out of memory: "}[kind] + detail
        elif kind in ("E", "M") and self.open_test is None:
            self.error = self.error or detail
            self.oom = self.oom or kind == "M"
        elif kind == "T":
            self.tamper = self.tamper or f"tampering: {detail}"
        elif kind == "X":
            self.runner_error = detail
        elif kind == "D" and self.open_test is None and index == len(self.steps):
            self.done = True
        else:
            self.violation(f"unexpected {kind!r} line")

    @property
    def tests_run(self) -> int:
        return len(self.outcomes) + (1 if self.open_test is not None else 0)

    @property
    def tests_passed(self) -> int:
        return sum(1 for v in self.outcomes.values() if v == "P")


class _Capture:
    """One captured stream, capped; counts every byte the child wrote."""

    def __init__(self, cap: int):
        self.cap = cap
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    def text(self) -> str:
        return bytes(self.data).decode("utf-8", "replace")


class _DirectChild:
    """The job's child, forked by the supervisor itself (one-shot mode, or not an init)."""

    def __init__(self, run) -> None:
        """Fork; the child calls ``run()`` (which never returns) and exits 71 if it does."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                run()
            finally:
                os._exit(71)
        self.exit_fd = os.pidfd_open(self.pid)  # readable once the child has exited
        self.fork_server_killed = False

    def exit_ready(self) -> bool:
        """``exit_fd`` is readable: the child has exited."""
        return True

    def finish(self) -> tuple[int | None, float, int]:
        """Kill the child and all it started, reap them: (wait status, CPU seconds, leftovers)."""
        try:
            wpid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            wpid, status, usage = self.pid, None, None
        if wpid == 0:
            os.kill(self.pid, signal.SIGKILL)
            _, status, usage = os.wait4(self.pid, 0)
        os.close(self.exit_fd)
        cpu = (usage.ru_utime + usage.ru_stime) if usage is not None else 0.0
        return status, cpu, kill_descendants(self.pid)


def supervise(program_source: str, tests_source: str, limits: dict, extra_fds: tuple[int, ...] = (),
              fork_server: ForkServer | None = None) -> dict:
    """Run one job in the current directory; the verdict and capped output as a dict.

    ``extra_fds`` are descriptors to watch for hang-up (the host's request pipe in server mode):
    if the host goes away the job is killed at once. ``fork_server`` (server mode, as pid 1) forks
    the job's child; without one the supervisor forks it itself.
    """
    started = time.monotonic()
    try:
        stmts, steps = plan_tests(tests_source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return build_report(Status.FAILED, f"tests do not parse: {type(exc).__name__}: {exc}"[:DETAIL_CHARS], 0, 0, 0, None, None, b"", b"", started)
    if not any(kind != "setup" for kind, _, _ in steps):
        return build_report(Status.FAILED, "no tests ran: the tests contain no test", 0, 0, 0, None, None, b"", b"", started)
    statements = compile_statements(stmts)
    program = compile_program(program_source)
    watch = watched_names(statements)

    token = os.urandom(16).hex()
    result_r, result_w = os.pipe()
    try:
        fcntl.fcntl(result_w, fcntl.F_SETPIPE_SZ, MAX_RESULT_BYTES)
    except OSError:
        pass  # over this user's pipe quota: the default size, read every RESULT_POLL_S
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if fork_server is None:
        def run_child() -> None:
            prepare_job_process(os.getcwd())
            child_main(statements, steps, program, watch, token, result_w, out_w, err_w, limits)

        child = _DirectChild(run_child)
    else:
        job_fd = os.memfd_create("amr-job", os.MFD_CLOEXEC)
        write_all(job_fd, marshal.dumps((statements, steps, program, watch, token, limits, os.getcwd())))
        child = fork_server.spawn(job_fd, result_w, out_w, err_w)
        os.close(job_fd)
    for fd in (result_w, out_w, err_w):
        os.close(fd)
    if child is None:
        for fd in (result_r, out_r, err_r):
            os.close(fd)
        return build_report(Status.INFRA_ERROR, "the sandbox's fork server is gone", 0, 0, 0, None, None, b"", b"", started, ["fork server gone"])

    cap = int(limits["output_bytes"])
    out, err = _Capture(cap), _Capture(cap)
    tally = _Tally(steps, token)
    pending = bytearray()
    result_bytes = 0
    deadline = started + float(limits["wall_s"])
    timed_out = over_output = host_gone = False
    exit_code = term_signal = None
    # The result pipe is read whenever something else wakes us and at least every
    # RESULT_POLL_S, not on each line (a wake-up per test line costs more than the test);
    # it holds MAX_RESULT_BYTES, so a child never blocks on it before we look.
    os.set_blocking(result_r, False)
    poller = select.poll()
    for fd in (out_r, err_r, child.exit_fd):
        poller.register(fd, select.POLLIN)
    for fd in extra_fds:
        poller.register(fd, 0)  # hang-up only
    open_fds = {result_r, out_r, err_r}
    child_exited = False

    def drain(fd: int) -> bool | None:
        """Read once: True if more may follow, False at EOF or flood, None if nothing yet."""
        nonlocal result_bytes
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return None
        if not chunk:
            if fd == result_r:
                open_fds.discard(fd)
            return False
        if fd == result_r:
            result_bytes += len(chunk)
            if result_bytes > MAX_RESULT_BYTES:
                tally.violation("result flood")
                open_fds.discard(fd)
                return False
            pending.extend(chunk)
            while b"\n" in pending:
                line, _, rest = bytes(pending).partition(b"\n")
                pending[:] = rest
                tally.feed(line)
        else:
            (out if fd == out_r else err).add(chunk)
        return True

    while not child_exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for fd, events in poller.poll(min(remaining, RESULT_POLL_S) * 1000):
            if fd in extra_fds:
                host_gone = True
            elif fd == child.exit_fd:
                child_exited = child.exit_ready()
            elif fd in open_fds and not drain(fd):
                poller.unregister(fd)
                open_fds.discard(fd)
        while result_r in open_fds and drain(result_r) is not None:
            pass
        if host_gone or out.total + err.total > cap or tally.tamper.startswith("protocol violation: result flood"):
            over_output = not host_gone and out.total + err.total > cap
            break
    status, cpu_used, leftovers = child.finish()
    if status is not None and os.WIFEXITED(status):
        exit_code = os.WEXITSTATUS(status)
    elif status is not None and os.WIFSIGNALED(status):
        term_signal = os.WTERMSIG(status)
    # What the child wrote before it died is still in the pipes; every writer is dead now
    # (as init) or the reads stop at the cap, so this ends.
    for fd in list(open_fds):
        os.set_blocking(fd, False)
        while fd in open_fds and out.total + err.total <= 2 * cap and drain(fd):
            pass
    for fd in (result_r, out_r, err_r):
        os.close(fd)
    over_output = over_output or (not timed_out and out.total + err.total > cap)

    anomalies = []
    if leftovers:
        anomalies.append(f"{leftovers} leftover processes killed")
    if child.fork_server_killed:
        anomalies.append("fork server killed")
    if host_gone:
        return build_report(Status.INFRA_ERROR, "host went away", tally.tests_run, tally.tests_passed, len(tally.test_indexes), exit_code, term_signal, out.data, err.data, started, anomalies + ["host gone"])

    planned = len(tally.test_indexes)
    if timed_out:
        status, detail = Status.TIMEOUT, f"wall time limit of {limits['wall_s']}s exceeded"
        anomalies.append(Status.TIMEOUT.value)
    elif term_signal == signal.SIGXCPU or (term_signal == signal.SIGKILL and cpu_used >= 0.95 * float(limits["cpu_s"])):
        status, detail = Status.TIMEOUT, f"CPU time limit of {limits['cpu_s']}s exceeded"
        anomalies.append(Status.TIMEOUT.value)
    elif tally.oom:
        status, detail = Status.OOM, f"memory limit of {limits['memory_bytes']} bytes exceeded: " + (tally.first_failure or tally.error)
        anomalies.append(Status.OOM.value)
    elif over_output:
        status, detail = Status.OUTPUT_LIMIT, f"output exceeded {cap} bytes"
        anomalies.append(Status.OUTPUT_LIMIT.value)
    elif tally.runner_error:
        status, detail = Status.INFRA_ERROR, f"runner: {tally.runner_error}"
        anomalies.append("runner error")
    elif child.fork_server_killed:
        status, detail = Status.FAILED, "the program killed the sandbox's fork server (its parent process)"
    elif tally.tamper:
        status, detail = Status.FAILED, tally.tamper
        anomalies.append("tampering")
    elif tally.error:
        status, detail = Status.FAILED, tally.error
    elif not tally.done:
        how = f"exit code {exit_code}" if exit_code is not None else f"signal {term_signal}"
        where = f" during test {tally.open_test}" if tally.open_test is not None else ""
        status, detail = Status.FAILED, f"exited before the tests finished{where} ({how})"
    elif tally.tests_run == 0:
        status, detail = Status.FAILED, "no tests ran"
    elif tally.tests_passed == planned == tally.tests_run and exit_code == 0:
        status, detail = Status.PASSED, f"{tally.tests_passed}/{planned} tests passed"
    else:
        status = Status.FAILED
        detail = f"{tally.tests_passed}/{planned} tests passed; {tally.first_failure}"[:DETAIL_CHARS]
    return build_report(status, detail, tally.tests_run, tally.tests_passed, planned, exit_code, term_signal, out.data, err.data, started, anomalies)
