"""The runner's entry points: one-shot (one job in the current folder) and the worker's server loop."""

from __future__ import annotations

import gc
import json
import signal
import sys
import time
import os

from amr_dagster.sandbox.base import Status

from .cleanup import empty_dir, sysv_ipc_in_use
from .fork_server import ForkServer
from .libc import become_undumpable
from .pytest_shim import pytest_stand_in
from .supervisor import supervise
from .wire import FRAME_HEADER, MANIFEST_FILE, PROGRAM_FILE, REPORT_PREFIX, TESTS_FILE, DETAIL_CHARS, decode_files, job_from_files, read_exact, build_report, write_files, writev_all


# Modules imported once by a worker so forked children start warm (throughput). Not here on
# purpose: ``threading`` and what imports it (``asyncio``, ``logging``, ``unittest.mock``):
# with it loaded, every fork runs threading's after-fork hooks in Python (measured: +0.4 ms of
# CPU per job, more than a whole HumanEval program), so the rare job using them imports them.
WARM_MODULES = (
    "typing", "collections", "collections.abc", "math", "re", "itertools", "functools", "heapq",
    "bisect", "string", "json", "random", "dataclasses", "enum", "fractions", "decimal",
    "statistics", "hashlib", "copy", "operator", "datetime", "unittest", "inspect", "base64",
    "resource", "io", "textwrap", "abc", "numbers", "array", "struct", "traceback", "contextlib",
)


def _prepare_std_streams() -> None:
    """Set up the runner's own sys.stdout/stderr the way a job's child uses them once it has
    pointed fds 1 and 2 at its capture pipes (so the child needs no new stream objects):
    UTF-8 that never fails on a lone surrogate, stderr line-buffered. Nothing was written yet."""
    sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace", line_buffering=True)


def main_one_shot() -> int:
    """Run the job in the current directory; print one ``AMR-REPORT`` line (nonce from stdin)."""
    files = {}
    for name in (MANIFEST_FILE, PROGRAM_FILE, TESTS_FILE):
        with open(name, "rb") as f:
            files[name] = f.read()
    program, tests, limits = job_from_files(files)
    become_undumpable()
    _prepare_std_streams()
    report = supervise(program, tests, limits)
    report["nonce"] = sys.stdin.readline().strip()  # read only now: every user process is dead
    # Keep the report line within half the output cap, so a backend capping this process's
    # output at the job's cap never truncates the report itself.
    budget = max(4096, int(limits["output_bytes"]) // 2)
    line = json.dumps(report)
    while len(line) > budget and (report["stdout"] or report["stderr"]):
        for key in ("stdout", "stderr"):
            report[key] = report[key][: len(report[key]) // 2]
        line = json.dumps(report)
    sys.stdout.write(f"\n{REPORT_PREFIX} {line}\n")
    sys.stdout.flush()
    return 0


def main_serve(scratch_dirs: list[str]) -> int:
    """Worker loop: job frame in, (children die), nonce frame in, report frame out. Forever."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGPIPE else signal.SIG_DFL)
    become_undumpable()
    _prepare_std_streams()
    for name in WARM_MODULES:
        try:
            __import__(name)
        except ImportError:
            pass
    pytest_stand_in()
    # Everything alive now lives as long as the worker: take it out of the collector's view, so
    # a job's collections never walk (and copy-on-write fault) the warm heap it inherits.
    gc.collect()
    gc.freeze()

    workdir = os.path.join(scratch_dirs[0], "job")
    nonce = bytearray(256)
    fork_server = None
    while True:
        try:
            size = int.from_bytes(read_exact(0, FRAME_HEADER), "big")
            request = json.loads(read_exact(0, size))
        except EOFError:
            return 0
        try:
            files = decode_files(request["files"])
            program, tests, limits = job_from_files(files)
            os.mkdir(workdir, 0o755)
            write_files(workdir, {k: v for k, v in files.items() if not k.startswith("_amr_")})
            os.chdir(workdir)
            if os.getpid() == 1 and (fork_server is None or not fork_server.alive):
                fork_server = ForkServer(workdir)  # only an init can clean up after a fork server's children
            report = supervise(program, tests, limits, extra_fds=(0,), fork_server=fork_server)
        except Exception as exc:  # a broken request, not a program: the host retries elsewhere
            report = build_report(Status.INFRA_ERROR, f"worker: {type(exc).__name__}: {exc}"[:DETAIL_CHARS], 0, 0, 0, None, None, b"", b"", time.monotonic(), ["worker error"])
        os.chdir("/")
        clean = all(empty_dir(d) for d in scratch_dirs)
        if not clean:
            report["anomalies"].append("scratch not empty after cleanup")
        if sysv_ipc_in_use():
            report["anomalies"].append("System V IPC objects left")
        report["job_id"] = request.get("job_id", "")
        if "host gone" in report["anomalies"]:
            return 0
        try:
            nonce_size = int.from_bytes(read_exact(0, FRAME_HEADER), "big")
            if nonce_size > len(nonce):
                raise EOFError("nonce too long")
            got = os.readv(0, [memoryview(nonce)[:nonce_size]])
            if got != nonce_size:
                raise EOFError("short nonce")
        except EOFError:
            return 0
        body = json.dumps(report).encode()
        header = (nonce_size + 1 + len(body)).to_bytes(FRAME_HEADER, "big")
        writev_all(1, [header, memoryview(nonce)[:nonce_size], b"\n", body])
        nonce[:] = bytes(len(nonce))


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--serve":
        scratch = [argv[i + 1] for i, a in enumerate(argv) if a == "--scratch" and i + 1 < len(argv)]
        return main_serve(scratch or ["/tmp"])
    return main_one_shot()
