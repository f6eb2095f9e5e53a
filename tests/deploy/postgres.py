"""A real PostgreSQL 15 for the deployment tests: Debian's initdb/pg_ctl in a temp folder.

The cluster is created on a free loopback port with its socket in the same folder, owned by
the ``postgres`` system user when the tests run as root (initdb refuses root), trust auth on
loopback only. ``stop``/``start`` bring the same cluster down and up again (the fault tests).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(argv: list[str]) -> list[str]:
    """Run as the cluster's owner: ``postgres`` when we are root, else ourselves."""
    return ["runuser", "-u", USER, "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PostgresServer:
    folder: Path
    port: int
    db_name: str = "dagster"
    user: str = "dagster"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user, "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": self.db_name,
        }

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(_as_owner([str(BIN / "pg_ctl"), "-D", str(self.data), *args]), check=True,
                       capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        self._ctl("-w", "-l", str(self.folder / "postgres.log"), "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m MODE``: ``fast`` ends every session (in-flight queries fail),
        ``immediate`` is a crash."""
        self._ctl("-w", "-m", mode, "stop")

    def running(self) -> bool:
        return subprocess.run([str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER],
                              capture_output=True).returncode == 0


def create(folder: Path) -> PostgresServer:
    """initdb a new cluster under ``folder``, start it, create the role and database."""
    if not (BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL 15 not installed ({BIN}): scripts/install_system_deps.sh installs it")
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, USER, USER)  # its parents must let USER through (x bit)
    server = PostgresServer(folder, free_port())
    subprocess.run(_as_owner([str(BIN / "initdb"), "-D", str(server.data), "-A", "trust", "-U", USER, "--no-sync"]),
                   check=True, capture_output=True, text=True, timeout=120)
    server.start()
    psql = _as_owner([str(BIN.parent / "bin" / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", USER, "-d", "postgres", "-v", "ON_ERROR_STOP=1"])
    subprocess.run([*psql, "-c", f"CREATE ROLE {server.user} LOGIN", "-c", f"CREATE DATABASE {server.db_name} OWNER {server.user}"],
                   check=True, capture_output=True, text=True, timeout=60)
    return server


def wait_down(server: PostgresServer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while server.running():
        if time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL did not stop")
        time.sleep(0.2)


if __name__ == "__main__":  # a throwaway PostgreSQL for trying deploy/dagster.yaml (README)
    import tempfile

    from tests.s3_fixtures import serve_until_stopped

    folder = Path(tempfile.mkdtemp(prefix="amr-pg-"))
    folder.chmod(0o711)
    server = create(folder / "cluster")
    try:
        serve_until_stopped(server.env(), f"PostgreSQL 15 on 127.0.0.1:{server.port}")
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
