"""Engine lifecycle: one shared engine per process, every engine closed at exit without noise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.llm]

ROOT = Path(__file__).resolve().parents[2]


def test_shared_engine_is_built_once_and_closed_by_close_all():
    from amr_dagster.llm import registry

    spec = registry.EngineSpec(backend="llama_cpp", n_ctx=512, n_threads=1)
    engine = registry.shared_engine(spec)  # builds (and registers) under the registry's lock
    assert registry.shared_engine(spec) is engine
    assert registry.close_all() >= 1
    assert registry.shared_engine(spec) is not engine  # forgotten: the next use builds a new one
    registry.close_all()


def test_interpreter_exit_prints_no_destructor_traceback(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        from amr_dagster.llm.base import LLMRequest, SamplingParams
        from amr_dagster.llm.registry import EngineSpec, shared_cached_engine
        engine = shared_cached_engine(EngineSpec(backend="llama_cpp", n_ctx=512, n_threads=1), sys.argv[1])
        print(engine.generate([LLMRequest(prompt="def f(", params=SamplingParams(max_tokens=4, seed=1))])[0][0].ok)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cache.sqlite")], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("True")
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-2000:]
