"""The Dagster sink of ``amr_dagster.progress``: long stages' progress in the run's event log.

Installed once by ``definitions.py`` in every process that loads the code location (run
workers included). It logs through ``dagster.get_dagster_logger``, whose records Dagster turns
into log events of the step being executed, so the UI's run view shows e.g.
``responses: 96/192 samples (50%), 1.20 samples/s, ETA 1m20s`` at most every ``EVERY_S``
seconds per task, plus each task's first and last line.
"""

import dagster as dg

from amr_dagster import progress

EVERY_S = 10.0


def log_progress(event: progress.ProgressEvent) -> None:
    dg.get_dagster_logger("amr_progress").info(event.describe())


def install() -> progress.Sink:
    """Add the (throttled) log sink to this process, once."""
    global _installed
    if _installed is None:
        _installed = progress.add_sink(progress.throttled(log_progress, EVERY_S))
    return _installed


_installed: progress.Sink | None = None
