"""Seed formats: every entry of every format comes out exactly once, bad ones as errors."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amr_dagster.seeds.sources import MAX_FILE_BYTES, SourceFile, batch_fingerprint, is_seed_location, iter_source_files

GOOD = b'def f(x):\n    """Double."""\n    return 2 * x\n'


def entries(location: Path) -> dict[str, SourceFile]:
    found = list(iter_source_files(location))
    by_path = {s.path: s for s in found}
    assert len(by_path) == len(found), "each entry appears exactly once"
    return by_path


def test_folder_is_recursive_sorted_and_only_python(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "inner.py").write_bytes(GOOD)
    (tmp_path / "a.py").write_bytes(GOOD)
    (tmp_path / "z.py").write_bytes(GOOD)
    (tmp_path / "README.md").write_text("not a seed")
    found = list(iter_source_files(tmp_path))
    assert [s.path for s in found] == ["a.py", "b/inner.py", "z.py"]
    assert all(s.data == GOOD and s.error is None for s in found)


def test_single_python_file_and_unsupported_and_missing(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_bytes(GOOD)
    (tmp_path / "notes.txt").write_text("x")
    assert list(iter_source_files(tmp_path / "one.py")) == [SourceFile("one.py", GOOD)]
    [txt] = iter_source_files(tmp_path / "notes.txt")
    assert txt.data is None and txt.error == "unsupported_format: .txt"
    assert is_seed_location(tmp_path) and is_seed_location(tmp_path / "one.py")
    assert is_seed_location(tmp_path / "x.JSONL.gz") and not is_seed_location(tmp_path / "notes.txt")
    [missing] = iter_source_files(tmp_path / "nope.py")
    assert missing.error and missing.error.startswith("unreadable")


def test_symlink_loops_and_broken_links_are_error_entries(tmp_path: Path) -> None:
    root = tmp_path / "seeds"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_bytes(GOOD)
    os.symlink("..", root / "pkg" / "up")  # directory loop: pkg/up -> seeds
    os.symlink("self.py", root / "self.py")  # file symlink pointing at itself
    os.symlink("missing.py", root / "dangling.py")
    found = entries(root)
    assert found["pkg/mod.py"].data == GOOD
    assert found["self.py"].error == "symlink_loop"
    assert found["dangling.py"].error == "unreadable: broken symlink"
    # The loop is walked no further (the files behind it were already seen once) and reported.
    assert found["pkg/up"].error == "symlink_loop"
    assert set(found) == {"pkg/mod.py", "pkg/up", "self.py", "dangling.py"}


def test_symlink_loop_named_like_a_module_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "seeds"
    root.mkdir()
    (root / "a.py").write_bytes(GOOD)
    os.symlink(".", root / "loop.py")  # a directory symlink to its own parent, named *.py
    found = entries(root)
    assert found["loop.py"].error == "symlink_loop"
    assert found["a.py"].data == GOOD


def test_too_large_file_is_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    with open(big, "wb") as handle:
        handle.truncate(20 * 1024 * 1024)  # 20 MB
    [entry] = iter_source_files(big)
    assert entry.data is None
    assert entry.error == f"too_large: {20 * 1024 * 1024} bytes"
    assert MAX_FILE_BYTES < 20 * 1024 * 1024


def _tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)


def test_tar_gz_entries_with_unsafe_paths_and_links(tmp_path: Path) -> None:
    archive = tmp_path / "seeds.tar.gz"
    link = tarfile.TarInfo("pkg/link.py")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    folder = tarfile.TarInfo("pkg")
    folder.type = tarfile.DIRTYPE
    _tar_with(
        archive,
        [
            (folder, None),
            (tarfile.TarInfo("pkg/good.py"), GOOD),
            (tarfile.TarInfo("../evil.py"), GOOD),
            (tarfile.TarInfo("/abs/evil.py"), GOOD),
            (tarfile.TarInfo("pkg/../../up.py"), GOOD),
            (link, None),
            (tarfile.TarInfo("data.csv"), b"a,b\n"),
        ],
    )
    found = entries(archive)
    assert set(found) == {"pkg/good.py", "../evil.py", "/abs/evil.py", "pkg/../../up.py", "pkg/link.py"}
    assert found["pkg/good.py"].data == GOOD
    assert found["../evil.py"].error == "unsafe_archive_path: ../evil.py"
    assert found["/abs/evil.py"].error == "unsafe_archive_path: /abs/evil.py"
    assert found["pkg/../../up.py"].error == "unsafe_archive_path: pkg/../../up.py"
    assert found["pkg/link.py"].error == "unsafe_archive_entry: link to /etc/passwd"
    assert all(s.data is None for p, s in found.items() if p != "pkg/good.py")


def test_zip_entries_with_unsafe_paths(tmp_path: Path) -> None:
    archive = tmp_path / "seeds.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("pkg/good.py", GOOD)
        handle.writestr(zipfile.ZipInfo("../evil.py"), GOOD)
        handle.writestr(zipfile.ZipInfo("/abs/evil.py"), GOOD)
        handle.writestr("notes.txt", "skip me")
    found = entries(archive)
    assert found["pkg/good.py"].data == GOOD
    unsafe = {p: s.error for p, s in found.items() if p != "pkg/good.py"}
    assert len(unsafe) == 2
    assert all(e and e.startswith("unsafe_archive_path") for e in unsafe.values())


@pytest.mark.parametrize("name", ["broken.tar.gz", "broken.tgz", "broken.zip", "broken.tar"])
def test_corrupt_archive_is_one_error_entry(tmp_path: Path, name: str) -> None:
    archive = tmp_path / name
    archive.write_bytes(os.urandom(2048))
    [entry] = iter_source_files(archive)
    assert entry.path == name and entry.data is None
    assert entry.error and entry.error.startswith("corrupt_archive")


def test_truncated_tar_gz_keeps_what_was_read_and_reports_the_rest(tmp_path: Path) -> None:
    archive = tmp_path / "seeds.tar.gz"
    payload = os.urandom(200_000)  # incompressible, so truncation cuts into the second member
    _tar_with(archive, [(tarfile.TarInfo("a.py"), GOOD), (tarfile.TarInfo("b.py"), payload)])
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) // 2])
    found = list(iter_source_files(archive))
    assert found[0] == SourceFile("a.py", GOOD)
    assert found[-1].error and found[-1].error.startswith("corrupt_archive")


def test_jsonl_rows_with_broken_line_and_missing_content(tmp_path: Path) -> None:
    table = tmp_path / "stack.jsonl"
    lines = [
        json.dumps({"content": GOOD.decode(), "path": "src/a.py", "repo": "o/r", "license": "mit"}),
        "{this is not json",
        "",
        json.dumps({"path": "src/no_content.py"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"content": GOOD.decode(), "max_stars_repo_path": "b.py",
                    "max_stars_repo_name": "x/y", "max_stars_repo_licenses": ["apache-2.0"]}),
        json.dumps({"content": GOOD.decode()}),
        json.dumps({"content": 42, "path": "num.py"}),
    ]
    table.write_text("\n".join(lines) + "\n")
    found = list(iter_source_files(table))
    assert len(found) == 7  # every non-blank line is an entry
    assert found[0] == SourceFile("src/a.py", GOOD, "o/r", "mit")
    assert found[1].path == "row-1" and found[1].error and found[1].error.startswith("bad_jsonl_line: line 2")
    assert found[2] == SourceFile("src/no_content.py", None, error="missing_content")
    assert found[3].error and found[3].error.startswith("bad_row")
    assert found[4] == SourceFile("b.py", GOOD, "x/y", "apache-2.0")
    assert found[5] == SourceFile("row-6", GOOD)
    assert found[6].error == "bad_row: content is int"


def test_gzipped_jsonl_and_a_truncated_one(tmp_path: Path) -> None:
    rows = [json.dumps({"content": GOOD.decode(), "path": f"p{i}.py"}) for i in range(2000)]
    table = tmp_path / "stack.jsonl.gz"
    table.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    found = list(iter_source_files(table))
    assert [s.path for s in found] == [f"p{i}.py" for i in range(2000)]
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(table.read_bytes()[:1500])
    found = list(iter_source_files(truncated))
    assert found[-1].path == "cut.jsonl.gz" and found[-1].error and found[-1].error.startswith("corrupt_archive")
    assert all(s.error is None or s.error.startswith("bad_jsonl_line") for s in found[:-1])


def test_parquet_with_content_path_repo_license_in_row_groups(tmp_path: Path) -> None:
    table = tmp_path / "stack.parquet"
    n = 600  # several row groups and several read batches
    pq.write_table(
        pa.table(
            {
                "content": [GOOD.decode()] * (n - 1) + [None],
                "path": [f"f{i}.py" for i in range(n)],
                "repo": ["o/r"] * n,
                "license": ["mit"] * n,
                "stars": list(range(n)),
            }
        ),
        table,
        row_group_size=128,
    )
    found = list(iter_source_files(table))
    assert len(found) == n
    assert found[0] == SourceFile("f0.py", GOOD, "o/r", "mit")
    assert found[n - 1] == SourceFile(f"f{n - 1}.py", None, "o/r", "mit", error="empty_content: null")


def test_parquet_without_content_and_corrupt_parquet(tmp_path: Path) -> None:
    no_content = tmp_path / "nocontent.parquet"
    pq.write_table(pa.table({"text": ["x"]}), no_content)
    assert list(iter_source_files(no_content)) == [SourceFile("nocontent.parquet", None, error="missing_content_column")]
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1" + os.urandom(500))
    [entry] = iter_source_files(corrupt)
    assert entry.error and entry.error.startswith("corrupt_table")


def test_batch_fingerprint_tracks_content_and_names(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.py").write_bytes(GOOD)
    first = batch_fingerprint(folder)
    assert len(first) == 12 and int(first, 16) >= 0
    assert batch_fingerprint(folder) == first
    (folder / "a.py").write_bytes(GOOD + b"\n")
    edited = batch_fingerprint(folder)
    assert edited != first
    (folder / "a.py").rename(folder / "b.py")
    assert batch_fingerprint(folder) != edited
    single = tmp_path / "one.jsonl.gz"
    single.write_bytes(gzip.compress(b"{}"))
    assert batch_fingerprint(single) == batch_fingerprint(single)
    os.symlink(".", folder / "loop")  # a loop must not hang the fingerprint
    assert len(batch_fingerprint(folder)) == 12
