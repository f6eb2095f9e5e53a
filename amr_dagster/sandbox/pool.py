"""The pooled-worker sandbox both backends are: long-lived workers, each serving one job at a time.

What is the same for bubblewrap and Docker lives here: a fixed set of worker slots; a batch is
fed to them through one shared job index (each driver thread holds a worker and takes the next
index until none are left, so there is no per-job hand-off); a worker is (re)started before a
job when it is not running, has served ``recycle_after`` jobs, or cannot take this job's limits;
it is stopped after any anomaly (a fresh one serves the next job); a job that is not a harness
job is refused. What differs is a ``PooledWorker``: how a worker starts, talks (one job) and dies.

Retrying ``infra_error`` is not done here: every caller goes through
``harness.run_with_retries``, one retry policy for every backend (a fresh nonce per attempt).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from typing import Sequence

from amr_dagster.sandbox import harness
from amr_dagster.sandbox.base import SandboxJob, SandboxResult


_uid_counter = itertools.count()


def next_worker_uid(base: int) -> int:
    """A uid for a worker that no other worker on this machine is likely to hold: ``base``,
    spread by this process's pid, then counted (no passwd entry needed)."""
    return base + (os.getpid() % 4096) * 256 + next(_uid_counter) % 256


class PooledWorker(ABC):
    """One slot of a pool: a worker process or container that is started, fed jobs, stopped.

    ``jobs_done`` counts the jobs of the current start (the pool recycles at ``recycle_after``).
    """

    jobs_done: int = 0

    @abstractmethod
    def start(self, job: SandboxJob) -> None:
        """Start a fresh worker able to run ``job`` (raise if it cannot start)."""

    @abstractmethod
    def run(self, job: SandboxJob) -> SandboxResult:
        """Run one job on the started worker. A worker that broke stops itself (``alive()``
        is then False) and answers ``infra_error``, ``timeout`` or ``oom`` as it observed."""

    @abstractmethod
    def stop(self) -> None:
        """Kill the worker and release what it holds; idempotent."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether the worker is started and still running."""

    def fits(self, job: SandboxJob) -> bool:
        """Whether the running worker was started with what ``job`` needs (default: any job)."""
        return True


class PooledSandbox:
    """A ``Sandbox`` whose jobs run on a fixed set of ``PooledWorker`` slots.

    ``infra_exceptions``: exceptions of a worker's start or run that mean the sandbox failed
    (the job gets ``infra_error`` and the worker is stopped); any other exception propagates to
    the caller of ``run``.
    """

    name = "pooled"
    infra_exceptions: tuple[type[BaseException], ...] = ()

    def __init__(self, workers: Sequence[PooledWorker], recycle_after: int):
        self._workers = list(workers)
        self.recycle_after = max(1, int(recycle_after))
        self.worker_starts = 0  # how many times a worker was started, over the pool's life
        self._free: queue.Queue[PooledWorker] = queue.Queue()
        for worker in self._workers:
            self._free.put(worker)
        self._starts_lock = threading.Lock()
        self._closed = False

    def self_test(self) -> None:
        harness.isolation_self_test(self)

    def run(self, jobs: Sequence[SandboxJob]) -> list[SandboxResult]:
        if self._closed:
            raise RuntimeError("sandbox is closed")
        if not jobs:
            return []
        results: list[SandboxResult | None] = [None] * len(jobs)
        next_index = itertools.count().__next__  # atomic under the GIL: each index taken once
        failures: list[BaseException] = []

        def drive() -> None:
            """Hold one free worker and feed it jobs until none are left."""
            worker = self._free.get()
            try:
                while not failures and (i := next_index()) < len(jobs):
                    results[i] = self._run_on(worker, jobs[i])
            except BaseException as exc:  # re-raised in the caller's thread
                failures.append(exc)
            finally:
                self._free.put(worker)

        drivers = [threading.Thread(target=drive, name=f"amr-{self.name}", daemon=True)
                   for _ in range(min(len(jobs), len(self._workers)) - 1)]
        for thread in drivers:
            thread.start()
        try:
            drive()  # this thread drives a worker too
        finally:
            for thread in drivers:
                thread.join()
        if failures:
            raise failures[0]
        return results  # type: ignore[return-value]

    def _run_on(self, worker: PooledWorker, job: SandboxJob) -> SandboxResult:
        if not harness.is_harness_job(job):
            return harness.infra_error(job, f"the {self.name} backend runs only harness jobs (harness.build_job)")
        started = time.monotonic()
        try:
            if not worker.alive() or worker.jobs_done >= self.recycle_after or not worker.fits(job):
                worker.stop()
                worker.start(job)
                with self._starts_lock:
                    self.worker_starts += 1
            result = worker.run(job)
        except self.infra_exceptions as exc:
            worker.stop()
            return harness.infra_error(job, f"{self.name}: {type(exc).__name__}: {exc}", time.monotonic() - started)
        if result.anomalies or not worker.alive():
            worker.stop()  # a fresh worker after any anomaly
        return result

    def close(self) -> None:
        self._closed = True
        for worker in self._workers:
            worker.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
