"""README command 1's engine: vLLM in-process where it is installed, else llama.cpp.

Measured reason (README, "What to expect"): on 2 cores vLLM batches a stage's samples and made
twice llama.cpp's samples per hour with the same settings. An explicit ``--llm-backend``, a
deployment variable or ``--submit`` always decides instead, and the run's config shows the
choice.
"""

from __future__ import annotations

import importlib.util

import pytest

from amr_dagster import cli
from amr_dagster.cli import build_parser, default_engine, run_config


def _resources(argv: list[str]) -> dict:
    args = build_parser().parse_args(["run", *argv])
    return run_config(args, [], {"generator", "teacher", "generation"})["resources"]


@pytest.fixture
def vllm_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    monkeypatch.setattr(cli, "has_nvidia_gpu", lambda: False)
    for var in ("AMR_LLM_BACKEND", "AMR_GENERATOR_BACKEND", "AMR_TEACHER_BACKEND"):
        monkeypatch.delenv(var, raising=False)


def test_vllm_is_chosen_where_installed_and_runs_eager_on_a_cpu(vllm_installed):
    resources = _resources([])
    assert resources["generator"]["config"] == {"backend": "vllm", "enforce_eager": True}
    assert resources["teacher"]["config"] == resources["generator"]["config"]


def test_an_explicit_choice_a_deployment_variable_or_submit_decides(vllm_installed, monkeypatch):
    assert _resources(["--llm-backend", "llama_cpp"])["generator"]["config"] == {"backend": "llama_cpp"}
    assert "generator" not in _resources(["--submit"])
    monkeypatch.setenv("AMR_LLM_BACKEND", "openai")
    assert "generator" not in _resources([])


def test_without_vllm_the_resource_default_llama_cpp_stays(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    monkeypatch.delenv("AMR_LLM_BACKEND", raising=False)
    assert default_engine(build_parser().parse_args(["run"])) is None
    assert "generator" not in _resources([])
