"""The deployment's instance storage: dagster-postgres, with every call waiting out a PostgreSQL
restart for a bounded budget (deploy/dagster.yaml: ``storage: custom:`` this class).

Not a resource of the definitions: Dagster builds it from dagster.yaml in every process of the
deployment (webserver, daemon, run workers, the CLI). dagster-postgres retries only opening a
connection, 5 times in about 11 s (``retry_pg_connection_fn``, not configurable, dagster-io/dagster
#21209), and a statement that was running when the server went away fails at once; either way the
step (or the run worker) fails. Here every public call of the run, event-log and schedule storages
is retried as a whole while the error is a database outage (``is_database_outage``), for up to
``AMR_PG_RETRY_BUDGET_S`` seconds (default 60), through the object store's helper
(``with_retries``); then it fails with ``StorageUnavailable`` naming PostgreSQL and its address.

A call that gives up fails what was running (the step); what the process writes next is that
failure's record (the step and run failure events, the run's status), which no one else can write.
So until a call succeeds again, every call of the process waits ``RECORD_FACTOR`` times the budget:
a run whose PostgreSQL came back late still ends FAILED with the error naming PostgreSQL, and the
queue's one-run-per-batch limit lets its rerun through.

A call is retried whole (nested public calls pass through to the outermost one). A call that had
committed one statement before the server went away repeats it: at worst an event-log row twice
(``store_event`` inserts the event, then indexes it); the run's frames are not in PostgreSQL.
"""

from __future__ import annotations

import functools
import inspect
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from dagster._core.storage.base_storage import DagsterStorage
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from amr_dagster.storage.retry import PG_BUDGET_SETTING, StorageUnavailable, budget_s, is_database_outage, with_retries

RECORD_FACTOR = 10  # a failure's record waits this many budgets for PostgreSQL to come back


class _Outage:
    """Process-wide: has a call given up since the last call that succeeded (so what is written
    now is a failure's record)?"""

    gave_up = False
    depth = threading.local()  # per thread: how deep in retried calls (only the outermost retries)


def postgres_name(url: str) -> str:
    """``PostgreSQL at host:port/db``, the password left out."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return f"PostgreSQL at {parsed.host}:{parsed.port or 5432}/{parsed.database}"


def retried(call: Callable[[], Any], service: str, what: str) -> Any:
    """``call()`` through the PostgreSQL retry budget (longer while a failure is being recorded)."""
    depth = getattr(_Outage.depth, "value", 0)
    if depth:  # inside a retried call: the outermost one retries the whole
        return call()
    budget = budget_s(PG_BUDGET_SETTING) * (RECORD_FACTOR if _Outage.gave_up else 1)
    _Outage.depth.value = 1
    try:
        result = with_retries(call, service, what, budget, transient=is_database_outage, setting=PG_BUDGET_SETTING)
    except StorageUnavailable:
        _Outage.gave_up = True
        raise
    finally:
        _Outage.depth.value = 0
    _Outage.gave_up = False
    return result


def _public_methods(cls: type) -> list[str]:
    names = []
    for name in dir(cls):
        raw = inspect.getattr_static(cls, name)
        if name.startswith("_") or isinstance(raw, (property, classmethod, staticmethod)) or not callable(raw):
            continue
        if inspect.isgeneratorfunction(raw) or hasattr(raw, "__wrapped__"):  # context managers
            continue
        names.append(name)
    return names


def _retrying(base: type, connect: str) -> type:
    """A subclass of one dagster-postgres storage whose public methods all go through ``retried``
    and whose ``connect`` method opens a connection in one attempt: dagster-postgres's own ~11 s
    of connect retries would only blur the budget (a connection opened outside any retried call
    is retried for the budget like any call)."""

    def wrap(name: str):
        method = getattr(base, name)

        @functools.wraps(method)
        def call(self, *args, **kwargs):
            return retried(lambda: method(self, *args, **kwargs), postgres_name(self.postgres_url), name)

        return call

    @contextmanager
    def one_attempt(self, *args, **kwargs) -> Iterator[Any]:
        conn = retried(self._engine.connect, postgres_name(self.postgres_url), "connect")
        try:
            yield conn
        finally:
            conn.close()

    methods: dict[str, Any] = {name: wrap(name) for name in _public_methods(base)}
    methods[connect] = one_attempt
    return type(f"Retrying{base.__name__}", (base,), methods)


RetryingRunStorage = _retrying(PostgresRunStorage, "connect")
RetryingEventLogStorage = _retrying(PostgresEventLogStorage, "_connect")
RetryingScheduleStorage = _retrying(PostgresScheduleStorage, "connect")


class RetryingPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` (same config: ``postgres_db`` or ``postgres_url``) made of the
    retrying run, event-log and schedule storages; building them (which connects) is retried too."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        service = postgres_name(postgres_url)

        def build(cls: type):
            return retried(lambda: cls(postgres_url, should_autocreate_tables, token_provider=token_provider), service, f"open {cls.__name__}")

        self._run_storage = build(RetryingRunStorage)
        self._event_log_storage = build(RetryingEventLogStorage)
        self._schedule_storage = build(RetryingScheduleStorage)
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "RetryingPostgresStorage":
        return cls(
            inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
