"""The sandbox as a resource: opened lazily (only steps that execute code pay for it),
self-tested on open (fail closed), closed when the step ends."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from amr_dagster.sandbox.base import Limits, Sandbox


class SandboxResource(dg.ConfigurableResource):
    """``backend``: ``auto`` (Docker when an engine answers, else bubblewrap), ``docker`` or ``local``;
    empty = the deployment's ``AMR_SANDBOX_BACKEND`` where the step runs, else ``auto``."""

    backend: str = ""
    workers: int = 0  # 0 = one per core
    wall_s: float = 10.0
    cpu_s: float = 10.0
    memory_mb: int = 512
    pids: int = 64
    output_kb: int = 64
    docker_image: str = "amr-sandbox:py3"

    _sandbox: Any = PrivateAttr(default=None)

    def limits(self) -> Limits:
        return Limits(
            wall_s=self.wall_s,
            cpu_s=self.cpu_s,
            memory_bytes=self.memory_mb * 1024 * 1024,
            pids=self.pids,
            output_bytes=self.output_kb * 1024,
        )

    def backend_name(self) -> str:
        return self.backend or os.environ.get("AMR_SANDBOX_BACKEND") or "auto"

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            backend = self.backend_name()
            from amr_dagster.sandbox.auto import open_sandbox

            options: dict[str, Any] = {}
            if self.workers:
                options["workers"] = self.workers
            if backend in ("auto", "docker"):
                options["image"] = self.docker_image
            self._sandbox = open_sandbox(backend, **options)
        return self._sandbox

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
