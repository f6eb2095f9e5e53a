"""Mining seed functions, and surviving any bytes: every input entry is accounted for."""

from __future__ import annotations

import json
import os
import tarfile
import io
import sysconfig
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from amr_dagster.ids import row_id, stable_id
from amr_dagster.schemas import SEED_FUNCTION_COLUMNS
from amr_dagster.seeds.mining import file_id, mine_batch, mine_source, mine_tree
from amr_dagster.outcomes import summarize
from amr_dagster.seeds.sources import SourceFile, content_hash

MODULE = b'''"""A module."""
import json
import os.path
import numpy as np
from collections import OrderedDict, defaultdict as dd
from typing import *
try:
    import ujson as fastjson
except ImportError:
    import json as fastjson


def undocumented(x):
    return x


def first(values: list) -> str:
    """Serialize values."""
    return json.dumps(values) + os.path.sep


@staticmethod
@dd
def decorated(a, b=np.pi):
    """Has decorators."""
    counts = dd(int)
    return fastjson.dumps(counts) if a else b


async def fetch(url):
    \'\'\'Fetch a url.\'\'\'
    return await url


class Holder:
    def method(self):
        """Methods are not top-level."""
        return 1


def outer():
    """Outer."""
    def inner():
        """Nested functions are part of outer, not seeds."""
        return 2
    return inner
'''


def mine(data: bytes, path: str = "m.py", batch: str = "b") -> list[dict]:
    return mine_source(SourceFile(path, data), batch)


def test_documented_top_level_functions_only_in_order() -> None:
    rows = mine(MODULE)
    assert [r["name"] for r in rows] == ["first", "decorated", "fetch", "outer"]
    assert all(r["status"] == "accepted" and r["reject_reason"] is None for r in rows)
    assert [r["is_async"] for r in rows] == [False, False, True, False]
    assert rows[0]["docstring"] == "Serialize values."


def test_code_is_exact_source_with_decorators_and_line_span() -> None:
    rows = {r["name"]: r for r in mine(MODULE)}
    lines = MODULE.decode().splitlines(keepends=True)
    decorated = rows["decorated"]
    assert decorated["code"].startswith("@staticmethod\n@dd\ndef decorated(a, b=np.pi):\n")
    assert decorated["code"] == "".join(lines[decorated["line_start"] - 1 : decorated["line_end"]])
    assert lines[decorated["line_start"] - 1] == "@staticmethod\n"
    assert "def inner" in rows["outer"]["code"]


def test_imports_are_the_module_imports_the_function_uses() -> None:
    rows = {r["name"]: r for r in mine(MODULE)}
    assert rows["first"]["imports"] == ["import json", "import os.path"]
    # aliases, from-imports, and the first binding of a name bound twice (try/except)
    assert rows["decorated"]["imports"] == [
        "import numpy as np",
        "from collections import defaultdict as dd",
        "import ujson as fastjson",
    ]
    assert rows["fetch"]["imports"] == []


def test_ids_are_stable_and_lineage_is_kept() -> None:
    rows = mine(MODULE, path="pkg/m.py", batch="batch-1")
    parent = stable_id("batch-1", "pkg/m.py", content_hash(MODULE))
    assert all(r["parent_id"] == parent == file_id("batch-1", "pkg/m.py", MODULE) for r in rows)
    assert rows[0]["id"] == row_id(parent, rows[0]["code"])
    assert [r["id"] for r in mine(MODULE, path="pkg/m.py", batch="batch-1")] == [r["id"] for r in rows]
    assert mine(MODULE, path="pkg/m.py", batch="batch-2")[0]["id"] != rows[0]["id"]


def test_line_numbers_follow_python_not_str_splitlines() -> None:
    # form feed, \x1c and U+2028 are line breaks for str.splitlines but not for Python
    source = 'X = "a\x1cb\u2028c"  # \x0c\n\n\r\ndef f(x):\r\n    """Doc."""\r\n    return x\r\n'
    [row] = mine(source.encode())
    assert (row["line_start"], row["line_end"]) == (4, 6)
    assert row["code"] == 'def f(x):\r\n    """Doc."""\r\n    return x\r\n'


def test_same_function_twice_in_a_file_gets_two_ids() -> None:
    twice = b'def f(x):\n    """Doc."""\n    return x\n\n\ndef f(x):\n    """Doc."""\n    return x\n'
    rows = mine(twice)
    assert len(rows) == 2 and rows[0]["code"] == rows[1]["code"]
    assert rows[0]["id"] != rows[1]["id"]


def _reason(data: bytes) -> str:
    [row] = mine(data)
    assert row["status"] == "rejected"
    assert row["source_path"] == "m.py" and row["code"] is None
    assert row["id"] == row_id(row["parent_id"], "")
    return row["reject_reason"]


def test_bad_bytes_each_become_one_rejected_row() -> None:
    assert _reason(b"") == "empty_file"
    assert _reason(b"  \n\t\n") == "empty_file"
    assert _reason(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") == "binary_file: NUL byte at offset 8"
    assert _reason(b'def f(x):\n    """a\x00b"""\n    return x\n').startswith("binary_file: NUL byte")
    assert _reason('def f(x):\n    """caf\xe9"""\n    return x\n'.encode("latin-1")).startswith("decode_error: not utf-8")
    assert _reason(b"# -*- coding: klingon -*-\ndef f(): pass\n").startswith("decode_error")
    assert _reason(b"def f(:\n    return 1\n").startswith("syntax_error: line 1")
    assert _reason(b"x = 1\nclass A:\n    def m(self):\n        '''doc'''\n        return 1\n") == "no_documented_functions"
    assert _reason(b"def f(x):\n    return x\n") == "no_documented_functions"


def test_pep_263_declared_encoding_is_honoured() -> None:
    source = '# -*- coding: latin-1 -*-\ndef f(x):\n    """Caf\xe9 au lait."""\n    return x\n'
    [row] = mine(source.encode("latin-1"))
    assert row["status"] == "accepted" and row["docstring"] == "Caf\xe9 au lait."
    [bom] = mine(b"\xef\xbb\xbf" + b'def g(x):\n    """Bom."""\n    return x\n')
    assert bom["status"] == "accepted" and bom["code"].startswith("def g")


def test_deeply_nested_code_is_a_rejection_not_a_crash() -> None:
    parens = b"def f(x):\n    '''doc'''\n    return " + b"(" * 5000 + b"x" + b")" * 5000 + b"\n"
    assert _reason(parens).startswith("syntax_error")
    ifs = b"def f(x):\n    '''doc'''\n" + b"".join(b"    " * (i + 1) + b"if x:\n" for i in range(5000)) + b"    " * 5001 + b"return x\n"
    assert _reason(ifs).startswith("syntax_error")
    chain = b"def f(x):\n    '''doc'''\n    return " + b"+".join([b"x"] * 200_000) + b"\n"
    assert _reason(chain) == "too_deeply_nested: RecursionError"
    # the interpreter is fine afterwards
    assert mine(b'def ok(x):\n    """Fine."""\n    return x\n')[0]["status"] == "accepted"


def test_bad_folder_every_entry_is_accounted_for(tmp_path: Path) -> None:
    root = tmp_path / "seeds"
    root.mkdir()
    files = {
        "good.py": b'def f(x):\n    """Doc."""\n    return x\n\n\ndef g(y):\n    """Doc g."""\n    return y\n',
        "binary.py": os.urandom(64) + b"\x00" + os.urandom(64),
        "latin.py": 'def f(x):\n    """caf\xe9"""\n    return x\n'.encode("latin-1"),
        "nul.py": b"x = 1\x00\n",
        "syntax.py": b"def broken(:\n",
        "empty.py": b"",
        "nested.py": b"def f(x):\n    \"\"\"Doc.\"\"\"\n    return " + b"-" * 300_000 + b"x\n",
        "none.py": b"x = 1\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    with open(root / "huge.py", "wb") as handle:
        handle.truncate(20 * 1024 * 1024)
    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "loop")
    os.symlink("self.py", root / "self.py")
    frame = mine_batch(root, "bad")
    assert frame.schema == pl.Schema(SEED_FUNCTION_COLUMNS)
    reasons = {r["source_path"]: r["reject_reason"] for r in frame.iter_rows(named=True) if r["status"] == "rejected"}
    expected_paths = set(files) | {"huge.py", "sub/loop", "self.py"}
    assert set(frame["source_path"]) == expected_paths
    assert frame.height == len(expected_paths) + 1  # good.py has two functions
    assert reasons["binary.py"].startswith("binary_file")
    assert reasons["latin.py"].startswith("decode_error")
    assert reasons["nul.py"].startswith("binary_file")
    assert reasons["syntax.py"].startswith("syntax_error")
    assert reasons["empty.py"] == "empty_file"
    assert reasons["nested.py"] == "too_deeply_nested: MemoryError"  # the parser stack overflows
    assert reasons["none.py"] == "no_documented_functions"
    assert reasons["huge.py"] == f"too_large: {20 * 1024 * 1024} bytes"
    assert reasons["sub/loop"] == "symlink_loop"
    assert reasons["self.py"] == "symlink_loop"
    assert "good.py" not in reasons
    assert summarize(frame)["accepted"] == 2
    assert frame["id"].n_unique() == frame.height


def test_a_real_20mb_python_file_is_rejected_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    line = b'def f(x):\n    """Doc."""\n    return x\n'
    big.write_bytes(line * (20 * 1024 * 1024 // len(line) + 1))
    frame = mine_batch(big, "big")
    assert frame.height == 1 and frame["reject_reason"][0].startswith("too_large")


def test_archive_and_tables_through_mine_batch(tmp_path: Path) -> None:
    good = b'def f(x):\n    """Doc."""\n    return x\n'
    archive = tmp_path / "s.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("ok.py", "../evil.py", "/abs.py"):
            info = tarfile.TarInfo(name)
            info.size = len(good)
            tar.addfile(info, io.BytesIO(good))
    frame = mine_batch(archive, "arch")
    assert dict(zip(frame["source_path"], frame["reject_reason"])) == {
        "/abs.py": "unsafe_archive_path: /abs.py",
        "../evil.py": "unsafe_archive_path: ../evil.py",
        "ok.py": None,
    }
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        json.dumps({"content": good.decode(), "path": "a.py", "repo": "o/r", "license": "mit"}) + "\n{oops\n"
        + json.dumps({"path": "c.py"}) + "\n"
    )
    frame = mine_batch(jsonl, "j")
    assert frame.height == 3
    ok = frame.filter(pl.col("status") == "accepted").row(0, named=True)
    assert (ok["repo"], ok["license"], ok["source_path"]) == ("o/r", "mit", "a.py")
    assert sorted(r for r in frame["reject_reason"] if r) == ["bad_jsonl_line: line 2: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)", "missing_content"]
    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.table({"content": [good.decode(), "def broken(:"], "path": ["p.py", "q.py"],
                             "repo": ["o/r", None], "license": ["mit", None]}), parquet)
    frame = mine_batch(parquet, "p")
    assert frame.select("source_path", "repo", "license", "status").rows() == [
        ("p.py", "o/r", "mit", "accepted"),
        ("q.py", None, None, "rejected"),
    ]


def test_repeated_bad_entries_keep_distinct_ids(tmp_path: Path) -> None:
    archive = tmp_path / "dup.tar"
    with tarfile.open(archive, "w") as tar:
        for size in (3, 3, 5):
            info = tarfile.TarInfo("../evil.py")
            info.size = size
            tar.addfile(info, io.BytesIO(b"x" * size))
    frame = mine_batch(archive, "dup")
    assert frame["reject_reason"].to_list() == ["unsafe_archive_path: ../evil.py"] * 3
    assert frame["id"].n_unique() == 3


def test_identical_rows_in_a_table_keep_distinct_ids(tmp_path: Path) -> None:
    good = 'def f(x):\n    """Doc."""\n    return x\n'
    jsonl = tmp_path / "dup.jsonl"
    jsonl.write_text((json.dumps({"content": good, "path": "same.py"}) + "\n") * 3)
    frame = mine_batch(jsonl, "dup")
    assert frame.height == 3 and frame["id"].n_unique() == 3


def test_mine_batch_is_deterministic_and_sorted(tmp_path: Path) -> None:
    root = tmp_path / "s"
    (root / "b").mkdir(parents=True)
    for name in ("z.py", "a.py", "b/c.py"):
        (root / name).write_bytes(b'def f(x):\n    """D."""\n    return x\n\n\ndef g(x):\n    """E."""\n    return x\n')
    first = mine_batch(root, "s")
    assert first.equals(mine_batch(root, "s"))
    assert first.select("source_path", "line_start").rows() == sorted(first.select("source_path", "line_start").rows())


def test_mine_tree_streams_real_stdlib_functions() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"]) / "json"
    rows = list(mine_tree(stdlib, limit=5))
    assert len(rows) == 5
    assert all(r["status"] == "accepted" and r["code"].lstrip().startswith(("def", "async", "@")) for r in rows)
    assert list(mine_tree(stdlib, limit=0)) == []
