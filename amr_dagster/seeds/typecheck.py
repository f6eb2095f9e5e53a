"""Static type check of standalone functions with pyright, batched and time-limited.

Each function (its imports, then its code) is written as its own file in a temporary folder,
and one pyright process checks a whole batch of files (``--outputjson``), which amortizes
pyright's ~1.5 s start-up over the batch. Only diagnostics of severity ``error`` count; each
is mapped back to its function and to a line of the function's own code. A batch that runs
past its time limit is killed (the whole process group: the PyPI ``pyright`` wrapper starts
node as a child) and its functions get ``typecheck_timeout``.

Pyright resolves imports against the running interpreter (``--pythonpath``), so a function
may use anything installed next to the pipeline and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

PYRIGHT_CONFIG = {
    "typeCheckingMode": "basic",
    "pythonVersion": f"{sys.version_info.major}.{sys.version_info.minor}",
    "pythonPlatform": "Linux",
    "include": ["."],
}


class PyrightUnavailable(RuntimeError):
    """Pyright could not run at all (not a verdict on any function): the stage must fail."""


@dataclass
class TypecheckReport:
    """Per function: None when clean, else a reason; plus what the run cost."""

    reasons: list[str | None]
    wall_s: float = 0.0
    batches: int = 0
    timed_out_batches: int = 0
    errors_by_rule: dict[str, int] = field(default_factory=dict)


def standalone_source(imports: Sequence[str], code: str) -> tuple[str, int]:
    """The file pyright sees for one function, and how many lines precede the code."""
    header = "".join(f"{statement}\n" for statement in imports)
    if header:
        header += "\n\n"
    return header + code, header.count("\n")


def pyright_command() -> list[str]:
    """The pyright CLI of this environment (the PyPI ``pyright`` package's entry point)."""
    candidate = Path(sys.executable).with_name("pyright")
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("pyright")
    if found:
        return [found]
    return [sys.executable, "-m", "pyright"]


def typecheck_sources(
    sources: Sequence[tuple[Sequence[str], str]],
    timeout_s: float = 300.0,
    batch_size: int = 200,
) -> TypecheckReport:
    """Type-check each ``(imports, code)`` on its own; one reason (or None) per source."""
    report = TypecheckReport(reasons=[None] * len(sources))
    started = time.perf_counter()
    for first in range(0, len(sources), max(1, batch_size)):
        indexes = list(range(first, min(first + batch_size, len(sources))))
        _check_batch(sources, indexes, timeout_s, report)
        report.batches += 1
    report.wall_s = time.perf_counter() - started
    return report


def _check_batch(
    sources: Sequence[tuple[Sequence[str], str]],
    indexes: list[int],
    timeout_s: float,
    report: TypecheckReport,
) -> None:
    with tempfile.TemporaryDirectory(prefix="amr-pyright-") as tmp:
        folder = Path(tmp)
        (folder / "pyrightconfig.json").write_text(json.dumps(PYRIGHT_CONFIG))
        header_lines: dict[str, tuple[int, int]] = {}
        for index in indexes:
            imports, code = sources[index]
            text, offset = standalone_source(imports, code)
            name = f"f{index:06d}.py"
            (folder / name).write_text(text, encoding="utf-8", errors="surrogatepass")
            header_lines[name] = (index, offset)
        command = [*pyright_command(), "--outputjson", "--pythonpath", sys.executable]
        process = subprocess.Popen(
            command,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            report.timed_out_batches += 1
            for index in indexes:
                report.reasons[index] = f"typecheck_timeout: batch over {timeout_s:g} s"
            return
        if process.returncode not in (0, 1):
            raise PyrightUnavailable(
                f"pyright exited {process.returncode}: {stderr.decode(errors='replace')[-500:]}"
                f" {stdout.decode(errors='replace')[-500:]}"
            )
        try:
            output = json.loads(stdout)
        except ValueError as exc:
            raise PyrightUnavailable(f"pyright printed no JSON: {stdout[:300]!r}") from exc
    for diagnostic in output.get("generalDiagnostics", []):
        if diagnostic.get("severity") != "error":
            continue
        where = header_lines.get(Path(diagnostic.get("file", "")).name)
        if where is None:
            continue
        index, offset = where
        rule = diagnostic.get("rule") or "error"
        report.errors_by_rule[rule] = report.errors_by_rule.get(rule, 0) + 1
        if report.reasons[index] is not None:
            continue  # the first error names the rejection
        line = diagnostic.get("range", {}).get("start", {}).get("line", 0) + 1 - offset
        place = f"line {line}" if line > 0 else "imports"
        message = diagnostic.get("message", "").splitlines()[0] if diagnostic.get("message") else ""
        report.reasons[index] = f"type_error: {place}: {message} [{rule}]"


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.communicate()
