"""One object-store interface over a local folder and an S3 prefix.

Every store that must live "under the data root" (frames, the batch registry, the export, the
shared-state commit logs, a shared LLM cache) talks to an ``ObjectStore``: get, put, list,
exists, and the two conditional writes S3 offers (create only if absent, ``IfNoneMatch="*"``;
replace only if unchanged, ``IfMatch=<etag>``). The local folder implements the same
semantics with atomic renames and hard links, so the default one-machine layout is the same
files as before and the shared-state protocol can be tested without a server.

S3 credentials and endpoint come the standard AWS way (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...) or from a client the caller passes (the Dagster layer passes the one
dagster-aws's ``S3Resource`` builds).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol

from amr_dagster.storage.retry import with_retries


def is_s3(url: str | os.PathLike[str] | None) -> bool:
    return str(url or "").startswith("s3://")


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    if not is_s3(url):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, prefix.strip("/")


def join(*parts: str) -> str:
    """Join key parts with single slashes (``join("a/", "/b")`` -> ``a/b``)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class ObjectStore(Protocol):
    """Keys are ``/``-separated paths relative to the store's root."""

    url: str

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def create(self, key: str, data: bytes) -> bool:
        """Write only if ``key`` does not exist; False when another writer created it first."""
        ...

    def replace(self, key: str, data: bytes, etag: str | None) -> bool:
        """Write only if ``key`` still has ``etag`` (None: only if absent); False otherwise."""
        ...

    def etag(self, key: str) -> str | None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "", start_after: str = "") -> list[str]:
        """Keys under the folder ``prefix`` (recursive), sorted, greater than ``start_after``."""
        ...

    def stamps(self, prefix: str = "") -> list[tuple[str, str]]:
        """(key, change stamp) of every object under ``prefix``: the ETag on S3."""
        ...

    def child(self, prefix: str) -> "ObjectStore": ...

    def uri(self, key: str = "") -> str: ...


class LocalObjectStore:
    """A folder. Writes are temp file + rename; conditional ones use a hard link (atomic, and it
    fails when the name exists) under a short per-folder critical section for ``replace``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def uri(self, key: str = "") -> str:
        return str(self.path(key))

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _temp(self, target: Path, data: bytes) -> str:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return tmp

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        tmp = self._temp(target, data)
        try:
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def create(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        tmp = self._temp(target, data)
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def replace(self, key: str, data: bytes, etag: str | None) -> bool:
        if etag is None:
            return self.create(key, data)
        import fcntl  # a local folder: the lock is on this machine's own disk

        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            if self.etag(key) != etag:
                return False
            self.put(key, data)
            return True

    def etag(self, key: str) -> str | None:
        data = self.get(key)
        return None if data is None else hashlib.md5(data).hexdigest()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "", start_after: str = "") -> list[str]:
        base = self.path(prefix.strip("/"))
        if not base.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith("."):
                    keys.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(k for k in keys if k > start_after)

    def stamps(self, prefix: str = "") -> list[tuple[str, str]]:
        out = []
        for key in self.list(prefix):
            try:
                st = self.path(key).stat()
            except OSError:
                continue  # vanished between listing and stat
            out.append((key, f"{st.st_size}:{st.st_mtime_ns}"))
        return out

    def child(self, prefix: str) -> "LocalObjectStore":
        return LocalObjectStore(self.path(prefix.strip("/")))


def _s3_error_code(error: Exception) -> str:
    response: Any = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3ObjectStore:
    """A prefix of an S3 bucket. ``client_factory`` builds a boto3 S3 client (default: boto3 with
    the standard AWS environment); it is called lazily, once per store."""

    def __init__(self, bucket: str, prefix: str = "", client_factory: Callable[[], Any] | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._factory = client_factory
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            if self._factory is not None:
                self._client = self._factory()
            else:
                import boto3

                self._client = boto3.client("s3")
        return self._client

    def _key(self, key: str) -> str:
        return join(self.prefix, key)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _retried(self, call: Callable[[], Any], what: str) -> Any:
        """``call`` through the bounded retry budget (storage/retry.py): a restarting endpoint
        is waited for; one that stays down fails with an error naming it."""
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", "") or "the default endpoint"
        return with_retries(call, f"S3 at {endpoint} (bucket {self.bucket})", what)

    def get(self, key: str) -> bytes | None:
        def call() -> bytes | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            except Exception as error:  # botocore's ClientError; missing keys are None
                if _s3_error_code(error) in _MISSING:
                    return None
                raise

        return self._retried(call, f"read {self.uri(key)}")

    def put(self, key: str, data: bytes) -> None:
        self._retried(lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data), f"write {self.uri(key)}")

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> bool:
        failed_before = []  # a transient failure may hide a write that did land

        def call() -> bool:
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
                return True
            except Exception as error:
                if _s3_error_code(error) in _CONFLICT:
                    # Our own earlier attempt may have landed before its answer was lost.
                    return bool(failed_before) and self.get(key) == data
                failed_before.append(error)
                raise

        return self._retried(call, f"write {self.uri(key)} ({', '.join(condition)})")

    def create(self, key: str, data: bytes) -> bool:
        return self._conditional_put(key, data, IfNoneMatch="*")

    def replace(self, key: str, data: bytes, etag: str | None) -> bool:
        if etag is None:
            return self.create(key, data)
        return self._conditional_put(key, data, IfMatch=etag)

    def etag(self, key: str) -> str | None:
        def call() -> str | None:
            try:
                return str(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ETag"])
            except Exception as error:
                if _s3_error_code(error) in _MISSING:
                    return None
                raise

        return self._retried(call, f"stat {self.uri(key)}")

    def exists(self, key: str) -> bool:
        return self.etag(key) is not None

    def delete(self, key: str) -> None:
        self._retried(lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)), f"delete {self.uri(key)}")

    def _objects(self, prefix: str, start_after: str = "") -> list[dict[str, Any]]:
        full = join(self.prefix, prefix)
        full = f"{full}/" if full else ""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
        if start_after:
            args["StartAfter"] = self._key(start_after)
        def call() -> list[dict[str, Any]]:
            found = []
            for page in self.client.get_paginator("list_objects_v2").paginate(**args):
                found.extend(page.get("Contents", []))
            return found

        return self._retried(call, f"list {self.uri(prefix)}")

    def _relative(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    def list(self, prefix: str = "", start_after: str = "") -> list[str]:
        return sorted(self._relative(o["Key"]) for o in self._objects(prefix, start_after))

    def stamps(self, prefix: str = "") -> list[tuple[str, str]]:
        return sorted((self._relative(o["Key"]), str(o["ETag"])) for o in self._objects(prefix))

    def child(self, prefix: str) -> "S3ObjectStore":
        store = S3ObjectStore(self.bucket, join(self.prefix, prefix), self._factory)
        store._client = self._client
        return store


def download(store: ObjectStore, key: str, target: Path) -> None:
    """Copy object ``key`` of ``store`` to the local file ``target``, written atomically."""
    data = store.get(key)
    if data is None:
        raise FileNotFoundError(store.uri(key))
    LocalObjectStore(target.parent).put(target.name, data)


def open_store(url: str | os.PathLike[str], client_factory: Callable[[], Any] | None = None) -> ObjectStore:
    """``s3://bucket/prefix`` -> S3; anything else is a local folder."""
    if is_s3(url):
        bucket, prefix = split_s3(str(url))
        return S3ObjectStore(bucket, prefix, client_factory)
    return LocalObjectStore(url)
