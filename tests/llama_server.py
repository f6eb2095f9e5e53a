"""``python -m llama_cpp.server`` with the embedded Gemma model on a free loopback port, for tests
that need a real OpenAI-compatible server. It logs every request (uvicorn's access log) to a
file, so a test can count the requests it received."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_server_process(log_path: Path, n_threads: int = 1) -> Iterator[str]:
    """Start the server, wait until it answers, yield its /v1 base URL, stop it."""
    from amr_dagster.llm.embedded_model import embedded_model_path

    port = free_port()
    log = log_path.open("w")  # a file, not a pipe: the server logs every request
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(embedded_model_path()),
            "--model_alias", "gemma", "--chat_format", "gemma",
            "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", "2048", "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama server did not come up in 300 s")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def generation_requests(log_path: Path) -> int:
    """Completion and chat requests the server has answered so far (from its access log)."""
    text = log_path.read_text(errors="replace")
    return sum(text.count(f'"POST /v1/{path} HTTP') for path in ("completions", "chat/completions"))
