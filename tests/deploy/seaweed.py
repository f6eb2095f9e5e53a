"""A SeaweedFS S3 endpoint that a fault test can stop and start again on the same ports and
data folder (tests/s3_fixtures.py's server, which lives for the whole session, cannot)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.s3_fixtures import S3Server, free_ports, weed_server_command


class RestartableSeaweed:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = free_ports(4)  # master, volume, filer, s3 (each with its gRPC port at +10000)
        self.server = S3Server(endpoint=f"http://127.0.0.1:{self.ports[3]}", log=folder / "weed.log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        with (self.folder / "weed.log").open("a") as log:
            self.proc = subprocess.Popen(
                weed_server_command(self.folder, self.ports),
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
