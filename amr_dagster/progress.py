"""Progress of long work (LLM calls, sandbox runs, embeddings): rows done / total, rate, ETA.

The core stays Dagster-free: a stage opens a ``task`` with its total, the infrastructure it
calls reports finished units with ``advance(n)`` (a no-op when no task is open), and every
change goes to the *sinks* the caller installed: the Dagster layer logs to the run's event log,
the CLI draws a bar on the terminal. With no sink installed nothing is computed but counters.

    with progress.task("responses", total=len(requests) * n, unit="samples"):
        engine.generate(requests)        # CachedEngine calls progress.advance per sample

Tasks nest (embeddings inside a library update): ``advance`` goes to the innermost open task
of the current thread/context.
"""

from __future__ import annotations

import contextvars
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass(frozen=True)
class ProgressEvent:
    """One state of a task, as a sink sees it."""

    name: str
    done: int
    total: int
    unit: str
    elapsed_s: float
    finished: bool = False

    @property
    def rate(self) -> float:
        """Units per second so far (0 before the first unit)."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 and self.done else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None until a rate exists."""
        if self.finished or self.done >= self.total:
            return 0.0
        return (self.total - self.done) / self.rate if self.rate else None

    def describe(self) -> str:
        """``responses: 12/48 samples (25%), 0.80 samples/s, ETA 45s`` -- the log line."""
        pct = f" ({self.done / self.total:.0%})" if self.total else ""
        rate = f", {self.rate:.2f} {self.unit}/s" if self.rate else ""
        if self.finished:
            return f"{self.name}: {self.done}/{self.total} {self.unit} done in {format_seconds(self.elapsed_s)}{rate}"
        eta = self.eta_s
        if eta is None:  # nothing finished yet (a batched engine returns whole chunks): say how long
            return f"{self.name}: {self.done}/{self.total} {self.unit}{pct}, {format_seconds(self.elapsed_s)} so far, ETA ?"
        return f"{self.name}: {self.done}/{self.total} {self.unit}{pct}{rate}, ETA {format_seconds(eta)}"


Sink = Callable[[ProgressEvent], None]


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Task:
    """A counted piece of work; ``advance`` is thread-safe (a sandbox pool may report from threads)."""

    def __init__(self, name: str, total: int, unit: str) -> None:
        self.name, self.total, self.unit = name, max(0, int(total)), unit
        self.done = 0
        self.started = time.perf_counter()
        self._lock = threading.Lock()

    def event(self, finished: bool = False) -> ProgressEvent:
        return ProgressEvent(self.name, self.done, self.total, self.unit, time.perf_counter() - self.started, finished)

    def advance(self, n: int = 1) -> None:
        if n <= 0:
            return
        with self._lock:
            self.done = min(self.total, self.done + n) if self.total else self.done + n
            event = self.event()
        _publish(event)


_sinks: list[Sink] = []
_sinks_lock = threading.Lock()
_current: contextvars.ContextVar[tuple[Task, ...]] = contextvars.ContextVar("amr_progress_tasks", default=())


def _publish(event: ProgressEvent) -> None:
    for sink in list(_sinks):
        try:
            sink(event)
        except Exception:  # a broken display must never fail the work it reports on
            pass


def add_sink(sink: Sink) -> Sink:
    """Install a sink for every task of this process; returns it (for ``remove_sink``)."""
    with _sinks_lock:
        if sink not in _sinks:
            _sinks.append(sink)
    return sink


def remove_sink(sink: Sink) -> None:
    with _sinks_lock:
        if sink in _sinks:
            _sinks.remove(sink)


@contextmanager
def sink(s: Sink) -> Iterator[Sink]:
    """A sink for the duration of a block."""
    add_sink(s)
    try:
        yield s
    finally:
        remove_sink(s)


#: Seconds between reports of a task that has not advanced: a batched engine returns a whole
#: chunk of samples at once, and minutes without a line looked like a hung run.
HEARTBEAT_S = 10.0


@contextmanager
def task(name: str, total: int, unit: str = "rows", heartbeat_s: float = HEARTBEAT_S) -> Iterator[Task]:
    """Open a task; reports its start, every ``advance``, its state every ``heartbeat_s`` while
    it is open (elapsed time and ETA move on even when no unit finished), and its end."""
    t = Task(name, total, unit)
    token = _current.set((*_current.get(), t))
    _publish(t.event())
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            with t._lock:
                event = t.event()
            _publish(event)

    ticker = threading.Thread(target=beat, name=f"progress-{name}", daemon=True) if _sinks else None
    if ticker:
        ticker.start()
    try:
        yield t
    finally:
        stop.set()
        if ticker:
            ticker.join()
        _current.reset(token)
        _publish(t.event(finished=True))


def advance(n: int = 1) -> None:
    """``n`` more units of the innermost open task finished; nothing happens without a task."""
    tasks = _current.get()
    if tasks:
        tasks[-1].advance(n)


def throttled(s: Sink, every_s: float) -> Sink:
    """A sink that passes on a task's first and last event and at most one per ``every_s`` between."""
    last: dict[str, float] = {}
    lock = threading.Lock()

    def wrapped(event: ProgressEvent) -> None:
        now = time.monotonic()
        with lock:
            first = event.name not in last
            due = first or event.finished or now - last[event.name] >= every_s
            if not due:
                return
            if event.finished:
                last.pop(event.name, None)
            else:
                last[event.name] = now
        s(event)

    return wrapped
