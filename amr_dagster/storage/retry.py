"""Riding out a storage service that goes away for a while, with a bounded budget.

An S3 endpoint restarting, a network blip or a 5xx burst should not fail a stage that has
already spent minutes of LLM time; an endpoint that stays down must fail it soon, with an error
that names the service. ``with_retries`` retries only transient failures (connection refused or
dropped, timeouts, 5xx / throttling) with exponential backoff until ``budget_s`` seconds have
passed since the first failure, then raises ``StorageUnavailable``. The budget is a property of
the deployment, like boto3's own ``AWS_MAX_ATTEMPTS``: ``AMR_S3_RETRY_BUDGET_S`` (default 60).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, TypeVar

T = TypeVar("T")

DEFAULT_BUDGET_S = 60.0
_TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling"}


class StorageUnavailable(RuntimeError):
    """A storage service stayed unreachable for the whole retry budget."""


def budget_s() -> float:
    text = os.environ.get("AMR_S3_RETRY_BUDGET_S")
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
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, retried on transient errors for up to ``budget`` seconds (default
    ``budget_s()``); then ``StorageUnavailable`` naming ``service`` and ``what`` was tried."""
    budget = budget_s() if budget is None else budget
    deadline: float | None = None
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + budget
            if now + delay > deadline:
                raise StorageUnavailable(
                    f"{service} unreachable for {budget:.0f} s (retry budget, AMR_S3_RETRY_BUDGET_S) while trying to {what}: {error}"
                ) from error
            sleep(delay)
            delay = min(delay * 2, 5.0)


def is_database_outage(error: BaseException) -> bool:
    """An error of the instance's database driver (PostgreSQL restarting: connection refused,
    "server closed the connection unexpectedly"), told apart by the raising library."""
    module = type(error).__module__
    return module.startswith(("sqlalchemy", "psycopg", "dagster_postgres"))
