"""S3 through dagster-aws: the data root, the seed location and the shared LLM cache build their
boto3 client with ``dagster_aws.s3.S3Resource`` (endpoint, region and credentials the standard
AWS way: ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ...)."""

from __future__ import annotations

import os
from typing import Any, Callable

from dagster_aws.s3 import S3Resource


def s3_from_env() -> S3Resource:
    """The S3 resource configured from the standard AWS environment (unset means boto3's defaults)."""
    return S3Resource(
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
    )


def client_factory(s3: S3Resource | None = None) -> Callable[[], Any]:
    """A factory the core's object stores call lazily (no client is built for a local root)."""
    return (s3 or s3_from_env()).get_client
