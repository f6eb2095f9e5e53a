"""The retrying instance storage (resources/instance_storage.py) without a database: a PostgreSQL
that is not there (a closed loopback port, psycopg2's own "connection refused") is waited for
for the budget, then named; what retrying cannot change is raised at once; a failure's record
waits longer. The real outages are in test_pg_faults.py."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from amr_dagster.storage.retry import StorageUnavailable, is_database_outage
from resources import instance_storage
from resources.instance_storage import RECORD_FACTOR, RetryingPostgresStorage, postgres_name, retried
from tests.deploy.postgres import free_port


def _refused() -> Exception:
    """The error a stopped PostgreSQL gives, for real."""
    engine = sa.create_engine(f"postgresql+psycopg2://dagster@127.0.0.1:{free_port()}/dagster")
    with pytest.raises(OperationalError) as raised:
        engine.connect()
    return raised.value


@pytest.fixture(autouse=True)
def _fresh_outage_state():
    instance_storage._Outage.gave_up = False
    yield
    instance_storage._Outage.gave_up = False


def test_a_postgres_that_stays_down_is_named_after_the_budget(monkeypatch):
    monkeypatch.setenv("AMR_PG_RETRY_BUDGET_S", "2")
    port = free_port()
    started = time.monotonic()
    storage = RetryingPostgresStorage(f"postgresql+psycopg2://dagster:secret@127.0.0.1:{port}/runs", should_autocreate_tables=False)
    with pytest.raises(StorageUnavailable) as raised:
        storage.run_storage.get_runs()
    assert 1 <= time.monotonic() - started < 5  # retried (0.5 s, 1 s apart), each a single connect attempt
    message = str(raised.value)
    assert f"PostgreSQL at 127.0.0.1:{port}/runs unreachable" in message and "AMR_PG_RETRY_BUDGET_S" in message
    assert "trying to get_runs" in message
    assert "secret" not in message and "secret" not in postgres_name(f"postgresql://u:secret@h:1/d")


def test_outages_are_retried_answers_are_not():
    refused = _refused()
    assert is_database_outage(refused)
    constraint = IntegrityError("INSERT ...", {}, Exception("duplicate key"))
    assert not is_database_outage(constraint) and not is_database_outage(ValueError("x"))

    failures = iter([refused, refused])

    def flaky():
        error = next(failures, None)
        if error:
            raise error
        return "done"

    assert retried(flaky, "PostgreSQL at test", "test") == "done"
    started = time.monotonic()
    with pytest.raises(IntegrityError):
        retried(lambda: (_ for _ in ()).throw(constraint), "PostgreSQL at test", "test")
    assert time.monotonic() - started < 1


def test_after_giving_up_the_failure_record_waits_longer_until_a_call_succeeds(monkeypatch):
    monkeypatch.setenv("AMR_PG_RETRY_BUDGET_S", "0.3")
    refused = _refused()
    calls = []

    def down():
        calls.append(time.monotonic())
        raise refused

    with pytest.raises(StorageUnavailable):
        retried(down, "PostgreSQL at test", "store_event")
    assert len(calls) == 1  # the first retry (0.5 s away) is already past a 0.3 s budget
    calls.clear()
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        retried(down, "PostgreSQL at test", "store_event")  # the step's failure being recorded
    assert len(calls) >= 3 and time.monotonic() - started >= 0.3 * RECORD_FACTOR / 2
    assert f"unreachable for {0.3 * RECORD_FACTOR:.0f} s" in str(raised.value)
    assert retried(lambda: "ok", "PostgreSQL at test", "get_run") == "ok"
    calls.clear()
    with pytest.raises(StorageUnavailable):
        retried(down, "PostgreSQL at test", "store_event")
    assert len(calls) == 1  # back to the plain budget once a call went through


def test_nested_calls_are_retried_once_by_the_outermost():
    refused = _refused()
    inner_attempts = []

    def inner():
        inner_attempts.append(1)
        if len(inner_attempts) == 1:
            raise refused
        return "inner"

    assert retried(lambda: retried(inner, "PostgreSQL at test", "inner"), "PostgreSQL at test", "outer") == "inner"
    assert len(inner_attempts) == 2  # the inner call raised straight to the outer one, which retried


def test_a_statement_cut_off_by_a_restart_is_retried(deployment, monkeypatch):
    """``pg_ctl stop -m fast`` ends every session: a running statement fails with "terminating
    connection due to administrator command" (what dagster-postgres does not retry)."""
    import threading

    monkeypatch.setenv("AMR_PG_RETRY_BUDGET_S", "30")
    pg = deployment.postgres
    engine = sa.create_engine(f"postgresql+psycopg2://{pg.user}@127.0.0.1:{pg.port}/{pg.db_name}", poolclass=NullPool)
    errors: list[BaseException] = []

    def sleep_in_postgres():
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text("select 1 from pg_sleep(2)")).scalar_one()
        except Exception as error:
            errors.append(error)
            raise

    restart = threading.Timer(0.5, lambda: (pg.stop("fast"), time.sleep(2), pg.start()))
    restart.start()
    try:
        assert retried(sleep_in_postgres, postgres_name(str(engine.url)), "sleep") == 1
    finally:
        restart.join()
    assert errors and is_database_outage(errors[0]), errors
    assert "terminating connection" in str(errors[0]) or "closed the connection" in str(errors[0])
