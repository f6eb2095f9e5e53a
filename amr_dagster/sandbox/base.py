"""The one sandbox interface every backend (Docker, bubblewrap) implements.

A job is files + a command + limits; a result is a status plus what the harness-owned test
runner reported. ``infra_error`` means the sandbox itself failed (not the program): callers
retry it and never count it as a failing sample.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, Sequence


class Status(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    OOM = "oom"
    OUTPUT_LIMIT = "output_limit"
    INFRA_ERROR = "infra_error"


@dataclass(frozen=True)
class Limits:
    """Per-job resource limits. Sizes in bytes, times in seconds."""

    wall_s: float = 10.0
    cpu_s: float = 10.0
    memory_bytes: int = 512 * 1024 * 1024
    pids: int = 64
    file_size_bytes: int = 16 * 1024 * 1024
    output_bytes: int = 64 * 1024


@dataclass(frozen=True)
class SandboxJob:
    """Files (relative path -> content) written into a fresh work folder, and a command run there."""

    files: dict[str, str | bytes]
    command: tuple[str, ...]
    limits: Limits = field(default_factory=Limits)
    stdin: bytes = b""
    job_id: str = ""


@dataclass
class SandboxResult:
    status: Status
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    tests_run: int = 0
    tests_passed: int = 0
    duration_s: float = 0.0
    detail: str = ""  # why: e.g. "no tests ran", "nonce missing", "infra: container died"
    job_id: str = ""
    # What went wrong around the program (timeout, leftover processes, tampering...): a worker
    # that reports any anomaly is replaced before its next job.
    anomalies: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED


class Sandbox(Protocol):
    """A backend: runs jobs isolated; ``name`` is recorded with every verdict."""

    name: str

    def self_test(self) -> None:
        """Raise ``SandboxUnavailable`` unless isolation really works here (fail closed)."""

    def run(self, jobs: Sequence[SandboxJob]) -> list[SandboxResult]:
        """Run jobs (concurrently where the backend can); one result per job, same order."""

    def close(self) -> None:
        """Stop workers, remove containers; idempotent."""


class SandboxUnavailable(RuntimeError):
    """No isolating backend works here; the pipeline refuses to run rather than fall back."""
