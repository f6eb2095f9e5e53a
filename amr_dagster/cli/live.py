"""What ``amr-dagster run`` shows while it works: a progress bar and each stage's line as it ends.

Part of the CLI driver (like ``cli.py`` it may import Dagster, lazily): ``TerminalProgress`` is
a sink of ``amr_dagster.progress`` that draws the open task as a bar on a terminal (or, when
the output is a file or a CI log, writes a progress line every ``every_s`` seconds), and
``stage_hooks`` builds the Dagster success/failure hooks that call back as each step finishes,
so the CLI prints a stage's counts the moment its frame is stored.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Callable, TextIO

from amr_dagster.progress import ProgressEvent, format_seconds


class TerminalProgress:
    """A progress sink for the terminal; ``line`` prints a message without tearing the bar."""

    def __init__(self, stream: TextIO | None = None, out: TextIO | None = None, every_s: float = 10.0, width: int = 24) -> None:
        self.stream = stream or sys.stderr
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s, self.width = every_s, width
        self._bar: str = ""
        self._seen: dict[str, list] = {}
        self._lock = threading.Lock()

    def bar_text(self, event: ProgressEvent) -> str:
        filled = int(self.width * event.done / event.total) if event.total else 0
        eta = event.eta_s
        rate = f" {event.rate:.2f} {event.unit}/s" if event.rate else ""
        when = f" ETA {format_seconds(eta)}" if eta is not None else " ETA ?"
        text = f"  {event.name} [{'#' * filled}{'.' * (self.width - filled)}] {event.done}/{event.total} {event.unit}{rate}{when}"
        return text[: max(20, shutil.get_terminal_size((100, 20)).columns - 1)]

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if self.tty:
                self._clear()
                if not event.finished:
                    self._bar = self.bar_text(event)
                    self.stream.write("\r" + self._bar)
                    self.stream.flush()
                return
            # A file or CI log: a line every every_s seconds of a task, and its end if it got one.
            now = time.monotonic()
            seen = self._seen.get(event.name)
            if seen is None:
                self._seen[event.name] = [now, None]  # [started, last printed]
                return
            if event.finished:
                del self._seen[event.name]
                if seen[1] is None:
                    return  # too short to have reported: its stage line says enough
            elif now - (seen[1] or seen[0]) < self.every_s:
                return
            else:
                seen[1] = now
            self.stream.write(f"  ... {event.describe()}\n")
            self.stream.flush()

    def _clear(self) -> None:
        if self._bar:
            self.stream.write("\r" + " " * len(self._bar) + "\r")
            self.stream.flush()
            self._bar = ""

    def line(self, text: str) -> None:
        """Print ``text`` on ``out``; the bar (if any) is redrawn below it."""
        with self._lock:
            bar = self._bar
            self._clear()
            print(text, file=self.out, flush=True)
            if bar and self.tty:
                self._bar = bar
                self.stream.write("\r" + bar)
                self.stream.flush()


def stage_hooks(on_done: Callable[[str, bool], None]) -> set:
    """Dagster hooks calling ``on_done(asset_name, succeeded)`` after each step of a run."""
    import dagster as dg

    @dg.success_hook(name="amr_cli_stage_done")
    def _done(context: dg.HookContext) -> None:
        on_done(context.op.name, True)

    @dg.failure_hook(name="amr_cli_stage_failed")
    def _failed(context: dg.HookContext) -> None:
        on_done(context.op.name, False)

    return {_done, _failed}
