"""The bounded retry budget of the S3 object store, against a real endpoint that is not there
(a closed loopback port: botocore's own connection error) and a real 4xx answer."""

from __future__ import annotations

import time

import pytest

from amr_dagster.storage.objectstore import S3ObjectStore
from amr_dagster.storage.retry import StorageUnavailable, is_transient, with_retries
from tests.s3_fixtures import free_ports


def _closed_endpoint_store(monkeypatch) -> S3ObjectStore:
    import boto3
    from botocore.config import Config

    (port,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{port}"
    factory = lambda: boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s",  # noqa: E731
                                   region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    return S3ObjectStore("bucket", "root", factory)


def test_an_endpoint_that_stays_down_fails_after_the_budget_naming_it(monkeypatch):
    monkeypatch.setenv("AMR_S3_RETRY_BUDGET_S", "2")
    store = _closed_endpoint_store(monkeypatch)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        store.get("a/b.parquet")
    assert 1.5 <= time.monotonic() - started < 10
    message = str(raised.value)
    assert store.client.meta.endpoint_url in message and "bucket bucket" in message and "read s3://bucket/root/a/b.parquet" in message
    assert is_transient(raised.value.__cause__)


def test_transient_failures_are_retried_and_answers_are_not(s3_root):
    from amr_dagster.storage.objectstore import open_store

    store = open_store(s3_root)
    failures = iter([ConnectionError("reset"), ConnectionError("reset")])

    def flaky():
        error = next(failures, None)
        if error:
            raise error
        return "done"

    assert with_retries(flaky, "S3", "test", budget=30, sleep=lambda s: None) == "done"
    # a 4xx answer (here: no such bucket) is not transient: raised at once, never retried
    missing = type(store)("no-such-bucket-d14", "", lambda: store.client)
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        missing.put("x", b"1")
    assert not isinstance(raised.value, StorageUnavailable) and not is_transient(raised.value)
    assert time.monotonic() - started < 5
