"""The runner's wire format: job files in, report frames out (length-prefixed), the report dict."""

from __future__ import annotations

import base64
import json
import os
import time

from amr_dagster.sandbox.base import Status

REPORT_PREFIX = "AMR-REPORT"
MANIFEST_FILE = "_amr_job.json"
PROGRAM_FILE = "solution.py"
TESTS_FILE = "tests.py"
FRAME_HEADER = 8
DETAIL_CHARS = 300


def build_report(status: Status, detail, run, passed, planned, exit_code, term_signal, out, err, started, anomalies=()) -> dict:
    """The report the supervisor sends the host (``harness.result_from_report`` reads it)."""
    return {
        "status": status.value,
        "detail": detail,
        "tests_run": run,
        "tests_passed": passed,
        "tests_planned": planned,
        "exit_code": exit_code,
        "signal": term_signal,
        "stdout": bytes(out).decode("utf-8", "replace"),
        "stderr": bytes(err).decode("utf-8", "replace"),
        "duration_s": round(time.monotonic() - started, 6),
        "anomalies": list(anomalies),
    }


def read_exact(fd: int, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = os.read(fd, size - len(buf))
        if not chunk:
            raise EOFError("request channel closed")
        buf += chunk
    return bytes(buf)


def write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def writev_all(fd: int, parts: list) -> None:
    """``parts`` in order, in one system call when the pipe takes them all (no joined copy)."""
    written = os.writev(fd, parts)
    for part in parts:
        if written >= len(part):
            written -= len(part)
            continue
        write_all(fd, memoryview(part)[written:])
        written = 0


def decode_files(files: dict) -> dict[str, bytes]:
    out = {}
    for name, content in files.items():
        out[name] = base64.b64decode(content["b64"]) if isinstance(content, dict) else content.encode("utf-8")
    return out


def write_files(workdir: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"bad file name {name!r}")
        path = os.path.join(workdir, name)
        if "/" in name:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)


def job_from_files(files: dict[str, bytes]) -> tuple[str, str, dict]:
    manifest = json.loads(files[MANIFEST_FILE])
    program = files[manifest.get("program", PROGRAM_FILE)].decode("utf-8", "replace")
    tests = files[manifest.get("tests", TESTS_FILE)].decode("utf-8", "replace")
    return program, tests, manifest["limits"]
