"""The runner package packed into the one script every sandbox job runs (``sandbox/packing.py``)."""

from __future__ import annotations

import ast
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amr_dagster.sandbox import harness
from amr_dagster.sandbox.base import Status
from amr_dagster.sandbox.packing import RUNNER_PACKAGE, PackError, pack, packed_runner

RUNNER_DIR = Path(__file__).resolve().parents[2] / "amr_dagster" / "sandbox" / "runner"


def _run_one_shot(source: str, code: str, tests: str, folder: Path) -> harness.SandboxResult:
    """The packed script run as a job runs it, by the system python, in a folder holding only
    the job's files, with no environment: nothing of the project is importable there."""
    job = harness.build_job(code, tests)
    folder.mkdir()
    for name, content in {**job.files, harness.RUNNER_FILE: source}.items():
        (folder / name).write_text(content)
    done = subprocess.run(["/usr/bin/python3", *harness.RUNNER_COMMAND[1:]], cwd=folder, input=job.stdin,
                          capture_output=True, env={}, timeout=60)
    return harness.parse_report(job, done.stdout, exit_code=done.returncode, stderr=done.stderr)


def test_the_packed_runner_runs_standalone(tmp_path):
    source = packed_runner().source
    add = "def add(a, b):\n    return a + b\n"
    passed = _run_one_shot(source, add, "assert add(1, 2) == 3\nassert add(2, 2) == 4\n", tmp_path / "pass")
    assert passed.status is Status.PASSED and passed.tests_run == 2, passed.detail
    failed = _run_one_shot(source, add, "assert add(1, 2) == 4\n", tmp_path / "fail")
    assert failed.status is Status.FAILED and failed.tests_run == 1, failed.detail


def test_the_packed_runner_imports_nothing_of_the_project():
    tree = ast.parse(packed_runner().source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("amr_dagster"), ast.unparse(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("amr_dagster") for a in node.names), ast.unparse(node)
    # the package docstring (the threat model) heads the script
    assert ast.get_docstring(tree).startswith("The harness-owned test runner")


def test_the_packed_runner_is_the_same_on_every_call():
    first = packed_runner()
    assert packed_runner() is first  # built once per process
    again = pack(RUNNER_PACKAGE)  # and a fresh pack of the same files is byte-identical
    assert again.source == first.source and again.sha256 == first.sha256
    assert first.sha256 == hashlib.sha256(first.source.encode("utf-8")).hexdigest()
    assert harness.runner_source() == first.source
    assert harness.build_job("x = 1\n", "assert x\n").files[harness.RUNNER_FILE] == first.source


def test_every_module_of_the_package_is_packed_in_dependency_order():
    packed = packed_runner()
    on_disk = {f"{RUNNER_PACKAGE}.{p.stem}" for p in RUNNER_DIR.glob("*.py") if p.stem != "__init__"}
    assert on_disk | {RUNNER_PACKAGE, "amr_dagster.sandbox.base"} == set(packed.modules)
    order = packed.modules
    assert order[0] == RUNNER_PACKAGE and order[-1] == f"{RUNNER_PACKAGE}.main"
    assert order.index("amr_dagster.sandbox.base") < order.index(f"{RUNNER_PACKAGE}.wire") < order.index(f"{RUNNER_PACKAGE}.supervisor")


@pytest.fixture
def runner_copy(tmp_path, monkeypatch):
    """A copy of the runner package under another name, to add modules to."""
    name = f"runner_copy_{tmp_path.name.replace('-', '_')}"
    shutil.copytree(RUNNER_DIR, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, tmp_path / name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def test_a_module_added_to_the_package_is_packed(runner_copy, tmp_path):
    name, folder = runner_copy
    (folder / "extra.py").write_text(
        '"""A module nobody registered."""\n\nfrom .wire import PROGRAM_FILE\n\n\ndef extra_marker():\n    return PROGRAM_FILE\n')
    packed = pack(name)
    assert f"{name}.extra" in packed.modules
    assert packed.modules.index(f"{name}.wire") < packed.modules.index(f"{name}.extra")
    assert "def extra_marker():" in packed.source and "from .wire" not in packed.source
    result = _run_one_shot(packed.source, "x = 1\n", "assert x == 1\n", tmp_path / "job")
    assert result.status is Status.PASSED, result.detail


@pytest.mark.parametrize("module_text,complaint", [
    ('"""Defines a name another module has."""\n\nFRAME_HEADER = 4\n', "FRAME_HEADER is defined in both"),
    ('"""Renames on import."""\n\nfrom .wire import PROGRAM_FILE as program\n', "cannot be packed"),
    ('"""Imports a module, not names."""\n\nfrom . import wire\n', "import names from it"),
    ('"""Imports a project module that needs more than the standard library."""\n\nfrom amr_dagster.sandbox.harness import RUNNER_FILE\n',
     "imports more than the standard library"),
    ('"""Imports inside a function."""\n\ndef late():\n    from .wire import PROGRAM_FILE\n    return PROGRAM_FILE\n', "at top level"),
])
def test_modules_that_concatenation_would_break_are_refused(runner_copy, module_text, complaint):
    name, folder = runner_copy
    (folder / "broken.py").write_text(module_text)
    with pytest.raises(PackError, match=complaint):
        pack(name)
