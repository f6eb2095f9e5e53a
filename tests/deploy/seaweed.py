"""A SeaweedFS S3 endpoint that a fault test can stop and start again on the same ports and
data folder (tests/s3_fixtures.py's server, which lives for the whole session, cannot)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.s3_fixtures import S3Server, free_ports, weed_binary


class RestartableSeaweed:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = free_ports(4)  # master, volume, filer, s3 (each with its gRPC port at +10000)
        self.server = S3Server(endpoint=f"http://127.0.0.1:{self.ports[3]}")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        master, volume, filer, s3 = self.ports
        with (self.folder / "weed.log").open("a") as log:
            self.proc = subprocess.Popen(
                [
                    weed_binary(), "server", f"-dir={self.folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    f"-master.port={master}", f"-master.port.grpc={master + 10000}",
                    f"-volume.port={volume}", f"-volume.port.grpc={volume + 10000}",
                    f"-filer.port={filer}", f"-filer.port.grpc={filer + 10000}",
                    "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3 + 10000}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                    "-master.volumeSizeLimitMB=64", "-volume.max=0",
                ],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed server exited: {(self.folder / 'weed.log').read_text()[-3000:]}")
            try:
                self.server.client().list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError("SeaweedFS did not come up")
                time.sleep(0.3)

    def stop(self) -> None:
        """Gone at once, as in a crash (SIGKILL to its process group; SIGTERM takes ~20 s)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None
