"""Riding out a storage service that goes away for a while, with a bounded budget.

An S3 endpoint restarting, a network blip or a 5xx burst should not fail a stage that has
already spent minutes of LLM time; an endpoint that stays down must fail it soon, with an error
that names the service. ``with_retries`` retries only transient failures (connection refused or
dropped, timeouts, 5xx / throttling) with exponential backoff until ``budget_s`` seconds have
passed since the first failure, then raises ``StorageUnavailable``. The budget is a property of
the deployment, like boto3's own ``AWS_MAX_ATTEMPTS``: ``AMR_S3_RETRY_BUDGET_S`` (default 60) for
S3, ``AMR_PG_RETRY_BUDGET_S`` (default 60) for the instance's PostgreSQL, whose outages
``is_database_outage`` tells apart (resources/instance_storage.py).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, TypeVar

T = TypeVar("T")

DEFAULT_BUDGET_S = 60.0
S3_BUDGET_SETTING = "AMR_S3_RETRY_BUDGET_S"
PG_BUDGET_SETTING = "AMR_PG_RETRY_BUDGET_S"
_TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling"}


class StorageUnavailable(RuntimeError):
    """A storage service stayed unreachable for the whole retry budget."""


def budget_s(setting: str = S3_BUDGET_SETTING) -> float:
    text = os.environ.get(setting)
    return float(text) if text else DEFAULT_BUDGET_S


def is_transient(error: BaseException) -> bool:
    """Connection-level failures and server-side errors; never 4xx answers (missing key,
    failed precondition, access denied), which retrying cannot change."""
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return isinstance(error, (ConnectionError, TimeoutError))
    if isinstance(error, (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ReadTimeoutError,
                          bx.ConnectTimeoutError, bx.ProxyConnectionError, ConnectionError, TimeoutError)):
        return True
    response: Any = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in _TRANSIENT_CODES or status.startswith("5")


def with_retries(call: Callable[[], T], service: str, what: str, budget: float | None = None,
                 sleep: Callable[[float], None] = time.sleep, transient: Callable[[BaseException], bool] = is_transient,
                 setting: str = S3_BUDGET_SETTING) -> T:
    """``call()``, retried on errors ``transient`` accepts (default: S3's) for up to ``budget``
    seconds (default: the ``setting`` variable's value); then ``StorageUnavailable`` naming
    ``service``, the setting and ``what`` was tried."""
    budget = budget_s(setting) if budget is None else budget
    deadline: float | None = None
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as error:
            if not transient(error):
                raise
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + budget
            if now + delay > deadline:
                raise StorageUnavailable(
                    f"{service} unreachable for {budget:.0f} s (retry budget, {setting}) while trying to {what}: {error}"
                ) from error
            sleep(delay)
            delay = min(delay * 2, 5.0)


def is_database_outage(error: BaseException) -> bool:
    """The instance's PostgreSQL went away: connection refused or dropped, the server shutting
    down ("terminating connection due to administrator command"), or dagster-postgres giving up
    its own short connect retry. Not an answer the database gave (a constraint violation, a
    missing table, a statement timeout), which retrying cannot change."""
    if type(error).__name__ == "DagsterPostgresException":  # "too many retries for DB connection"
        return True
    try:
        import sqlalchemy.exc as sx
    except ImportError:  # pragma: no cover - dagster depends on sqlalchemy
        return False
    driver_error: BaseException | None = error
    if isinstance(error, sx.DBAPIError):
        if error.connection_invalidated:
            return True
        driver_error = error.orig
    elif isinstance(error, (sx.DisconnectionError, sx.TimeoutError)):  # the pool's own
        return True
    if getattr(driver_error, "pgcode", None) == "57014":  # query_canceled: a statement timeout
        return False
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - dagster-postgres installs it
        return False
    return isinstance(driver_error, (psycopg2.OperationalError, psycopg2.InterfaceError))
