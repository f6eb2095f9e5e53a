"""Seed quality filters: each rule with its reason, the fixed order, real pyright, the judge slot."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from amr_dagster.schemas import FILTERED_SEED_COLUMNS
from amr_dagster.seeds.filters import CHECK_ORDER, FilterConfig, filter_seeds, rule_violation
from amr_dagster.seeds.mining import mine_source, rows_to_frame
from amr_dagster.seeds.sources import SourceFile
from amr_dagster.seeds.typecheck import typecheck_sources

NO_PYRIGHT = FilterConfig(typecheck=False)
DENIED = frozenset(FilterConfig().denied_imports)


def frame_of(*sources: str) -> pl.DataFrame:
    """Mine real source text into accepted seed_functions rows."""
    rows = []
    for index, source in enumerate(sources):
        rows.extend(mine_source(SourceFile(f"s{index}.py", source.encode()), "test"))
    assert all(r["status"] == "accepted" for r in rows)
    return rows_to_frame(rows)


def reason_of(code: str, imports: tuple[str, ...] = (), max_lines: int = 150) -> str | None:
    row = mine_source(SourceFile("x.py", ("\n".join(imports) + "\n\n" + code).encode()), "t")[0]
    assert row["status"] == "accepted"
    return rule_violation(row["code"], row["imports"], row["docstring"], max_lines, DENIED)


CLEAN = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n    return a + b\n'


def test_clean_function_passes_every_rule() -> None:
    assert reason_of(CLEAN) is None


def test_must_return_a_value() -> None:
    assert reason_of('def f(x):\n    """Doc."""\n    print(x)\n') == "no_return_value"
    assert reason_of('def f(x):\n    """Doc."""\n    return\n') == "no_return_value"
    assert reason_of('def f(x):\n    """Doc."""\n    return None\n') == "no_return_value"
    nested = 'def f(x):\n    """Doc."""\n    def g():\n        return x\n    h = lambda: x\n    class C:\n        def m(self):\n            return 1\n'
    assert reason_of(nested) == "no_return_value"
    assert reason_of('def f(x):\n    """Doc."""\n    if x:\n        for i in x:\n            return i\n') is None
    assert reason_of('def f(xs):\n    """Generators yield values."""\n    for x in xs:\n        yield x\n') is None
    assert reason_of('def f(xs):\n    """Doc."""\n    yield from xs\n') is None


def test_todo_markers_in_comments_and_docstring_only() -> None:
    assert reason_of('def f(x):\n    """Doc."""\n    # TODO: speed up\n    return x\n') == "todo_marker: TODO"
    assert reason_of('def f(x):\n    """Doc. fixme later."""\n    return x\n') == "todo_marker: fixme"
    assert reason_of('def f(x):\n    """Doc."""\n    return x  # XXX wrong for 0\n') == "todo_marker: XXX"
    assert reason_of('def f(x):\n    """Doc."""\n    return x  # BUG: off by one\n') == "todo_marker: BUG"
    assert reason_of('def f(x):\n    """Doc."""\n    return x  # a hack\n') == "todo_marker: hack"
    # markers only inside string or identifier code are not comments
    assert reason_of('def f(todo_list):\n    """Debug helper for the bug tracker."""\n    return "TODO" + str(todo_list)\n') is None


def test_denied_imports_inside_or_used_from_the_module() -> None:
    assert reason_of('def f(p):\n    """Doc."""\n    import os.path\n    return os.path.join(p)\n') == "denied_import: os"
    assert reason_of('def f(p):\n    """Doc."""\n    from subprocess import run\n    return run(p)\n') == "denied_import: subprocess"
    assert reason_of('def f(p):\n    """Doc."""\n    return path.join(p)\n', ("from os import path",)) == "denied_import: os"
    assert reason_of('def f(p):\n    """Doc."""\n    return sys.argv[p]\n', ("import sys",)) == "denied_import: sys"
    assert reason_of('def f(p):\n    """Doc."""\n    return json.dumps(p)\n', ("import json", "import os")) is None  # os unused
    assert reason_of('def f(p):\n    """Doc."""\n    import osmosis\n    return osmosis.x(p)\n') is None


def test_line_limit_and_parameters() -> None:
    long = 'def f(x):\n    """Doc."""\n' + "    x += 1\n" * 10 + "    return x\n"
    assert reason_of(long, max_lines=5) == "too_long: 13 lines"
    assert reason_of(long, max_lines=13) is None
    assert reason_of('def f():\n    """Doc."""\n    return 1\n') == "no_parameters"
    assert reason_of('def f(self):\n    """Doc."""\n    return self.x\n') == "no_parameters"
    assert reason_of('def f(cls, y):\n    """Doc."""\n    return y\n') is None
    assert reason_of('def f(*args):\n    """Doc."""\n    return args\n') is None
    assert reason_of('def f(*, k):\n    """Doc."""\n    return k\n') is None


def test_first_failing_check_wins_in_documented_order() -> None:
    # no return value AND a TODO AND os AND no parameters: the earliest check names it
    assert reason_of('def f():\n    """Doc. TODO."""\n    import os\n    os.remove("x")\n') == "no_return_value"
    assert reason_of('def f():\n    """Doc. TODO."""\n    import os\n    return os.sep\n') == "todo_marker: TODO"
    assert reason_of('def f():\n    """Doc."""\n    import os\n    return os.sep\n') == "denied_import: os"
    assert CHECK_ORDER[0] == "contaminated" and CHECK_ORDER[-1] == "docstring_judge"


def test_filter_seeds_keeps_every_row_and_counts() -> None:
    frame = frame_of(
        CLEAN,
        'def f(x):\n    """Doc."""\n    print(x)\n',
        'def g():\n    """Doc."""\n    return 1\n',
    )
    out, stats = filter_seeds(frame, NO_PYRIGHT)
    assert out.schema == pl.Schema(FILTERED_SEED_COLUMNS)
    assert out.height == frame.height and out["id"].to_list() == frame["id"].to_list()
    assert out["reject_reason"].to_list() == [None, "no_return_value", "no_parameters"]
    assert out["status"].to_list() == ["accepted", "rejected", "rejected"]
    assert out["judge_verdict"].to_list() == [None, None, None]
    assert stats["accepted"] + stats["rejected"] == stats["input_rows"] == 3
    assert stats["rejected_by_check"] == {"no_return_value": 1, "no_parameters": 1}


def test_empty_frame_gives_empty_filtered_frame() -> None:
    out, stats = filter_seeds(rows_to_frame([]), FilterConfig())
    assert out.height == 0 and out.schema == pl.Schema(FILTERED_SEED_COLUMNS)
    assert stats["input_rows"] == 0 and stats["pyright_batches"] == 0


def test_already_rejected_rows_pass_through_unchanged() -> None:
    frame = frame_of(CLEAN, CLEAN.replace("add", "plus")).with_columns(
        pl.Series("status", ["accepted", "rejected"]), pl.Series("reject_reason", [None, "near_duplicate: abc"])
    )
    out, stats = filter_seeds(frame, NO_PYRIGHT)
    assert out["reject_reason"].to_list() == [None, "near_duplicate: abc"]
    assert stats["already_rejected"] == 1


def test_judge_sees_only_survivors_and_only_yes_is_kept() -> None:
    frame = frame_of(
        CLEAN,
        CLEAN.replace("add", "plus"),
        CLEAN.replace("add", "total"),
        'def f(x):\n    """Doc."""\n    print(x)\n',
    )
    seen: list[str] = []

    def judge(rows: list[dict]) -> list[tuple[str, str]]:
        seen.extend(r["name"] for r in rows)
        answers = {"add": ("yes", "Yes."), "plus": ("no", "No, vague."), "total": ("unparsed", "hmm")}
        return [answers[r["name"]] for r in rows]

    out, stats = filter_seeds(frame, NO_PYRIGHT, judge=judge)
    assert seen == ["add", "plus", "total"]
    assert out["reject_reason"].to_list() == [None, "docstring_judge: no", "docstring_judge: unparsed", "no_return_value"]
    assert out["judge_verdict"].to_list() == ["yes", "no", "unparsed", None]
    assert out["judge_answer"].to_list() == ["Yes.", "No, vague.", "hmm", None]
    assert stats["judged"] == 3

    with pytest.raises(ValueError, match="answers"):
        filter_seeds(frame, NO_PYRIGHT, judge=lambda rows: [])


def test_pyright_rejects_type_errors_with_line_of_the_function() -> None:
    frame = frame_of(
        CLEAN,
        'def bad(x: int) -> str:\n    """Wrong return type."""\n    y = x\n    return y\n',
        'def undefined(x):\n    """Uses an undefined helper."""\n    return helper(x)\n',
        'import no_such_module_here\n\ndef missing(x):\n    """Unresolvable import."""\n    return no_such_module_here.f(x)\n',
        'import json\nimport polars as pl\n\ndef uses(x: list[int]) -> str:\n    """Installed packages resolve."""\n    return json.dumps(x) + str(pl.DataFrame)\n',
    )
    out, stats = filter_seeds(frame, FilterConfig(typecheck_batch_size=3))
    reasons = dict(zip(out["name"], out["reject_reason"]))
    assert reasons["add"] is None and reasons["uses"] is None
    assert reasons["bad"].startswith("type_error: line 4: ") and "[reportReturnType]" in reasons["bad"]
    assert reasons["undefined"].startswith("type_error: line 3: ") and "reportUndefinedVariable" in reasons["undefined"]
    assert reasons["missing"].startswith("type_error: imports: ") and "reportMissingImports" in reasons["missing"]
    assert stats["pyright_batches"] == 2
    assert stats["rejected_by_check"] == {"type_error": 3}

    off, off_stats = filter_seeds(frame, NO_PYRIGHT)
    assert off["reject_reason"].null_count() == frame.height and "pyright_batches" not in off_stats


def _pyright_processes_in(prefix: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if Path(cwd.removesuffix(" (deleted)")).name.startswith(prefix):
                found.append(int(pid))
    return found


def test_pyright_timeout_kills_the_batch_and_marks_its_rows() -> None:
    sources = [((), CLEAN), (("import json",), 'def g(x):\n    """D."""\n    return json.dumps(x)\n')]
    before = set(_pyright_processes_in("amr-pyright-"))
    report = typecheck_sources(sources, timeout_s=0.05, batch_size=10)
    assert report.reasons == ["typecheck_timeout: batch over 0.05 s"] * 2
    assert report.timed_out_batches == 1
    assert set(_pyright_processes_in("amr-pyright-")) <= before  # node was killed with the wrapper
