"""``amr-dagster status`` and ``show`` over a data root written the way the stages write it
(FrameStore Parquet files, the batch registry), run through the real CLI entry point."""

from __future__ import annotations

import json

import polars as pl
import pytest

from amr_dagster import cli
from amr_dagster.seeds.batches import BatchRegistry
from amr_dagster.cli.show import select_rows, show
from amr_dagster.cli.status import stage_yield, status_report
from amr_dagster.storage.frames import FrameStore
from amr_dagster.cli.text_table import cell, render

STAGES = ["seed_functions", "filtered_seeds", "deduped_seeds", "seed_concepts"]


def _frame(ids, reasons, **columns):
    status = ["accepted" if r is None else "rejected" for r in reasons]
    return pl.DataFrame({"id": ids, **columns, "status": status, "reject_reason": pl.Series(reasons, dtype=pl.String)})


@pytest.fixture
def root(tmp_path):
    data = tmp_path / "data"
    store = FrameStore(data)
    keys = []
    for name in ("first", "second"):
        src = tmp_path / f"{name}.py"
        src.write_text(f"def {name}():\n    '''doc'''\n    return 1\n")
        keys.append(BatchRegistry(data).register(src).key)
    a, b = keys
    store.write("seed_functions", a, _frame(["s1", "s2", "s3"], [None, None, "no_docstring"], name=["f", "g", "h"],
                                            code=["def f():\n    return 1", "def g():\n    return 2", "def h(): pass"]))
    store.write("filtered_seeds", a, _frame(["s1", "s2"], [None, "pyright: 2 errors"], name=["f", "g"]))
    store.write("seed_functions", b, _frame(["t1"], [None], name=["k"], code=["def k(): ..."]))
    (data / "instruction_dataset").mkdir()
    (data / "instruction_dataset" / "card.json").write_text(json.dumps({"stats": {"exported": 2, "pairs_in": 3}}))
    return data, a, b


def test_stage_yield_counts_and_reason_families(root):
    data, a, _ = root
    y = stage_yield(FrameStore(data), "filtered_seeds", a)
    assert (y.rows, y.accepted, y.rejected, y.reasons) == (2, 1, 1, {"pyright": 1})
    assert stage_yield(FrameStore(data), "deduped_seeds", a) is None


def test_status_report_lists_batches_yields_and_dataset_size(root):
    data, a, b = root
    text = status_report(data, STAGES)
    assert text.splitlines()[0] == f"data root {data}: 2 seed batch(es)"
    block_a = text.split(f"batch {a}")[1].split(f"batch {b}")[0]
    assert "  seed_functions     3         2    67%  no_docstring 1\n" in block_a
    assert "  filtered_seeds     2         1    50%  pyright 1\n" in block_a
    assert "  deduped_seeds      -         -      -  (not materialized)\n" in block_a
    assert text.rstrip().splitlines()[-1].startswith("dataset: 2 pairs -> ")
    only_b = status_report(data, STAGES, batch=b)
    assert f"batch {a}" not in only_b and f"batch {b}" in only_b


def test_show_picks_the_newest_batch_and_filters_rejections(root):
    data, a, b = root
    assert show(data, "seed_functions").batch == b  # newest registered batch with output
    sel = show(data, "seed_functions", batch=a[:5], rejected="")
    assert sel.batch == a and sel.frame["id"].to_list() == ["s3"] and sel.matched == 1
    assert sel.frame.columns[:3] == ["id", "status", "reject_reason"] and "name" in sel.frame.columns
    assert show(data, "filtered_seeds", rejected="pyright").frame["id"].to_list() == ["s2"]
    assert show(data, "filtered_seeds", rejected="timeout").frame.height == 0
    assert show(data, "seed_functions", batch=a, accepted_only=True, limit=1).frame["id"].to_list() == ["s1"]
    with pytest.raises(LookupError, match="no output"):
        show(data, "deduped_seeds")
    with pytest.raises(LookupError, match="has no output"):
        show(data, "seed_functions", batch="nope")


def test_select_rows_without_status_column_keeps_everything():
    frame = pl.DataFrame({"x": [1, 2]})
    assert select_rows(frame, rejected="").height == 2


def test_cells_are_one_line_and_cut():
    assert cell("def f():\n    return 1", 40) == "def f(): ⏎ return 1"
    assert cell("x" * 10, 5) == "xxxx…"
    assert cell(None, 5) == "-" and cell(["a", "b"], 9) == "a, b"
    table = render([{"a": 1, "b": "long text"}], ["a", "b"], max_cell=6, right={"a"})
    assert table.splitlines() == ["a  b", "-  ------", "1  long …"]


def test_cli_status_and_show(root, capsys):
    data, a, _ = root
    assert cli.main(["status", "--data-dir", str(data)]) == 0
    assert f"batch {a}" in capsys.readouterr().out
    assert cli.main(["show", "seed_functions", "--data-dir", str(data), "--batch", a, "--rejected", "no_doc"]) == 0
    out = capsys.readouterr().out
    assert "seed_functions, batch" in out and "rejections: no_docstring 1" in out
    assert "showing 1 of 1 rows rejected for 'no_doc'" in out and "s3" in out and "def h(): pass" in out
    assert cli.main(["show", "not_a_stage", "--data-dir", str(data)]) == 2
    assert cli.main(["show", "deduped_seeds", "--data-dir", str(data)]) == 1
