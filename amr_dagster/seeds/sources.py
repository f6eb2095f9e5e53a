"""Reading seed batches: every supported format becomes a stream of ``SourceFile`` entries.

A seed batch is one location: a ``.py`` file, a folder of ``.py`` files (recursive), a
``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive of ``.py`` files, or a ``.jsonl`` (also
``.jsonl.gz``) or ``.parquet`` table with a ``content`` column (The Stack's layout; ``path``,
``repo`` and ``license`` columns are kept when present, and The Stack's ``max_stars_repo_*``
names are understood too).

Inside folders and archives only ``*.py`` entries are seed files; other entries (READMEs, data,
directories) are not seeds and are skipped by design, except that a symlink loop or an
unlistable directory is always reported, since it may hide seeds. Every ``.py`` entry, and every row of a
table, yields exactly one ``SourceFile``; an entry that cannot be used (unsafe archive path,
symlink loop, too large, unreadable, corrupt, a broken JSONL line) yields a ``SourceFile`` with
``data=None`` and an ``error`` reason, so the miner records it as a rejection instead of the run
crashing or the entry silently disappearing.

Everything streams: archives and tables are read entry by entry / row group by row group, and
a file larger than ``max_file_bytes`` is never read into memory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

#: Files above this size are rejected unread ("too_large: <n> bytes"). The largest ``.py`` in a
#: typical site-packages is ~4 MB (generated tables); 8 MiB leaves room and keeps ``ast.parse``
#: of one file well under a second and a few hundred MB.
MAX_FILE_BYTES = 8 * 1024 * 1024

#: Rows read at a time from a Parquet table.
PARQUET_BATCH_ROWS = 256

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
TABLE_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
#: Names a seed batch file may have (a folder is a batch too).
SEED_SUFFIXES = (".py", *ARCHIVE_SUFFIXES, *TABLE_SUFFIXES)


def is_seed_location(path: Path) -> bool:
    """Whether ``path`` is something ``iter_source_files`` reads as a batch (for the sensor)."""
    return Path(path).is_dir() or Path(path).name.lower().endswith(SEED_SUFFIXES)


@dataclass(frozen=True)
class SourceFile:
    """One seed file of a batch: its path inside the batch and its raw bytes, or why not."""

    path: str
    data: bytes | None
    repo: str | None = None
    license: str | None = None
    error: str | None = None


def iter_source_files(location: Path, max_file_bytes: int = MAX_FILE_BYTES) -> Iterator[SourceFile]:
    """Yield every seed entry of ``location`` (see the module docstring for the formats)."""
    location = Path(location)
    name = location.name.lower()
    if location.is_dir():
        yield from _iter_folder(location, max_file_bytes)
    elif not location.exists():
        yield SourceFile(location.name, None, error="unreadable: no such file or directory")
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        yield from _iter_tar(location, max_file_bytes)
    elif name.endswith(".zip"):
        yield from _iter_zip(location, max_file_bytes)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        yield from _iter_jsonl(location, max_file_bytes)
    elif name.endswith(".parquet"):
        yield from _iter_parquet(location, max_file_bytes)
    elif name.endswith(".py"):
        yield _read_file(location, location.name, max_file_bytes)
    else:
        yield SourceFile(location.name, None, error=f"unsupported_format: {location.suffix or location.name}")


def batch_fingerprint(location: Path) -> str:
    """A short content hash (12 hex) of a file or a folder, for partition keys.

    A folder's hash covers the relative path and content of every regular file in it, so any
    added, removed, renamed or edited file changes it.
    """
    location = Path(location)
    digest = hashlib.blake2b(digest_size=16)
    if location.is_dir():
        for rel, path, error in _walk(location):
            digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            if error is None:
                digest.update(_file_digest(path).encode() + b"\0")
            else:
                digest.update(error.encode() + b"\0")
    else:
        digest.update(_file_digest(location).encode())
    return digest.hexdigest()[:12]


def content_hash(data: bytes | None) -> str | None:
    """The blake2b hex digest of a file's bytes (part of the file's stable id)."""
    return None if data is None else hashlib.blake2b(data).hexdigest()


# --- folders ---------------------------------------------------------------------------


def _iter_folder(root: Path, max_file_bytes: int) -> Iterator[SourceFile]:
    for rel, path, error in _walk(root):
        # A symlink loop or an unlistable directory may hide seeds, whatever its name: report it.
        hides_seeds = error is not None and error.startswith(("symlink_loop", "unreadable_directory"))
        if not rel.endswith(".py") and not hides_seeds:
            continue
        if error is not None:
            yield SourceFile(rel, None, error=error)
        else:
            yield _read_file(path, rel, max_file_bytes)


#: A folder being walked: its remaining entry names, path, relative prefix, ancestor identities.
_Frame = tuple[Iterator[str], Path, str, frozenset[tuple[int, int]]]


def _walk(root: Path) -> Iterator[tuple[str, Path, str | None]]:
    """Every file under ``root`` in sorted path order as (relative path, path, error or None).

    Symlinks are followed, but a directory that is one of its own ancestors (a symlink loop)
    is reported once as an error entry instead of being walked forever. Broken or looping
    file symlinks are reported too. Iterative, so deep trees cannot overflow the stack.
    """
    root_stat = root.stat()

    def open_dir(directory: Path, prefix: str, ancestors: frozenset[tuple[int, int]]) -> _Frame | str:
        try:
            return iter(sorted(os.listdir(directory))), directory, prefix, ancestors
        except OSError as exc:
            return f"unreadable_directory: {exc.strerror or exc}"

    first = open_dir(root, "", frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    if isinstance(first, str):
        yield ".", root, first
        return
    stack: list[_Frame] = [first]
    while stack:
        names, directory, prefix, ancestors = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        path = directory / name
        rel = prefix + name
        try:
            st = path.stat()  # follows symlinks
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a symlink pointing (indirectly) at itself
                yield rel, path, "symlink_loop"
            elif path.is_symlink():
                yield rel, path, "unreadable: broken symlink"
            else:
                yield rel, path, f"unreadable: {exc.strerror or exc}"
            continue
        if stat.S_ISDIR(st.st_mode):
            identity = (st.st_dev, st.st_ino)
            if identity in ancestors:
                yield rel, path, "symlink_loop"
                continue
            frame = open_dir(path, rel + "/", ancestors | {identity})
            if isinstance(frame, str):
                yield rel, path, frame
            else:
                stack.append(frame)
        elif stat.S_ISREG(st.st_mode):
            yield rel, path, None


def _read_file(path: Path, rel: str, max_file_bytes: int) -> SourceFile:
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            return SourceFile(rel, None, error=f"too_large: {size} bytes")
        with open(path, "rb") as handle:
            data = handle.read(max_file_bytes + 1)
    except OSError as exc:
        if exc.errno == 40:
            return SourceFile(rel, None, error="symlink_loop")
        return SourceFile(rel, None, error=f"unreadable: {exc.strerror or exc}")
    if len(data) > max_file_bytes:  # grew while we read it
        return SourceFile(rel, None, error=f"too_large: more than {max_file_bytes} bytes")
    return SourceFile(rel, data)


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return digest.hexdigest()


# --- archives --------------------------------------------------------------------------


def _unsafe_reason(name: str) -> str | None:
    """Why an archive member name must not be used as a path (absolute, ``..``, drive letter)."""
    normalized = name.replace("\\", "/")
    parts = PurePosixPath(normalized).parts
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return f"unsafe_archive_path: {name}"
    if ".." in parts:
        return f"unsafe_archive_path: {name}"
    return None


def _iter_tar(location: Path, max_file_bytes: int) -> Iterator[SourceFile]:
    try:
        archive = tarfile.open(location, mode="r|*")  # stream mode: one pass, no member index in memory
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield SourceFile(location.name, None, error=f"corrupt_archive: {exc}")
        return
    with archive:
        members = iter(archive)
        while True:
            try:
                member = next(members)
            except StopIteration:
                return
            except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                yield SourceFile(location.name, None, error=f"corrupt_archive: {exc}")
                return
            if not member.name.endswith(".py") or member.isdir():
                continue
            unsafe = _unsafe_reason(member.name)
            if unsafe:
                yield SourceFile(member.name, None, error=unsafe)
            elif member.issym() or member.islnk():
                yield SourceFile(member.name, None, error=f"unsafe_archive_entry: link to {member.linkname}")
            elif not member.isfile():
                yield SourceFile(member.name, None, error="unsafe_archive_entry: not a regular file")
            elif member.size > max_file_bytes:
                yield SourceFile(member.name, None, error=f"too_large: {member.size} bytes")
            else:
                try:
                    handle = archive.extractfile(member)
                    data = handle.read() if handle is not None else None
                except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                    yield SourceFile(member.name, None, error=f"corrupt_archive: {exc}")
                    return
                if data is None:
                    yield SourceFile(member.name, None, error="unreadable: no data")
                else:
                    yield SourceFile(member.name, data)


def _iter_zip(location: Path, max_file_bytes: int) -> Iterator[SourceFile]:
    try:
        archive = zipfile.ZipFile(location)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        yield SourceFile(location.name, None, error=f"corrupt_archive: {exc}")
        return
    with archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.endswith(".py"):
                continue
            unsafe = _unsafe_reason(info.filename)
            if unsafe:
                yield SourceFile(info.filename, None, error=unsafe)
                continue
            if info.file_size > max_file_bytes:
                yield SourceFile(info.filename, None, error=f"too_large: {info.file_size} bytes")
                continue
            try:
                with archive.open(info) as handle:
                    data = handle.read(max_file_bytes + 1)
            except Exception as exc:  # zipfile raises BadZipFile, zlib.error, EOFError, NotImplementedError...
                yield SourceFile(info.filename, None, error=f"corrupt_archive: {type(exc).__name__}: {exc}")
                continue
            if len(data) > max_file_bytes:
                yield SourceFile(info.filename, None, error=f"too_large: more than {max_file_bytes} bytes")
            else:
                yield SourceFile(info.filename, data)


# --- tables ----------------------------------------------------------------------------

_PATH_KEYS = ("path", "max_stars_repo_path")
_REPO_KEYS = ("repo", "repo_name", "max_stars_repo_name")
_LICENSE_KEYS = ("license", "licenses", "max_stars_repo_licenses")


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value) if value else None
        return str(value)
    return None


def _table_entry(record: Any, index: int, max_file_bytes: int) -> SourceFile:
    """One table row as a SourceFile, or an error entry naming what is wrong with it."""
    fallback = f"row-{index}"
    if not isinstance(record, dict):
        return SourceFile(fallback, None, error=f"bad_row: expected an object, got {type(record).__name__}")
    path = _first(record, _PATH_KEYS) or fallback
    repo = _first(record, _REPO_KEYS)
    license_ = _first(record, _LICENSE_KEYS)
    content = record.get("content")
    if content is None:
        reason = "missing_content" if "content" not in record else "empty_content: null"
        return SourceFile(path, None, repo, license_, error=reason)
    if isinstance(content, str):
        data = content.encode("utf-8", "surrogatepass")
    elif isinstance(content, bytes):
        data = content
    else:
        return SourceFile(path, None, repo, license_, error=f"bad_row: content is {type(content).__name__}")
    if len(data) > max_file_bytes:
        return SourceFile(path, None, repo, license_, error=f"too_large: {len(data)} bytes")
    return SourceFile(path, data, repo, license_)


def _iter_jsonl(location: Path, max_file_bytes: int) -> Iterator[SourceFile]:
    try:
        handle = gzip.open(location, "rb") if location.name.lower().endswith(".gz") else open(location, "rb")
    except OSError as exc:
        yield SourceFile(location.name, None, error=f"unreadable: {exc.strerror or exc}")
        return
    with handle:
        index = 0
        lines = iter(handle)
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return
            except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated .gz
                yield SourceFile(location.name, None, error=f"corrupt_archive: after line {index}: {exc}")
                return
            index += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                yield SourceFile(f"row-{index - 1}", None, error=f"bad_jsonl_line: line {index}: {str(exc)[:120]}")
                continue
            yield _table_entry(record, index - 1, max_file_bytes)


def _iter_parquet(location: Path, max_file_bytes: int) -> Iterator[SourceFile]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(location)
        names = set(table.schema_arrow.names)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        yield SourceFile(location.name, None, error=f"corrupt_table: {type(exc).__name__}: {str(exc)[:160]}")
        return
    if "content" not in names:
        yield SourceFile(location.name, None, error="missing_content_column")
        return
    wanted = [c for c in ("content", *_PATH_KEYS, *_REPO_KEYS, *_LICENSE_KEYS) if c in names]
    index = 0
    with table:
        try:
            for batch in table.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
                for record in batch.to_pylist():
                    yield _table_entry(record, index, max_file_bytes)
                    index += 1
        except Exception as exc:
            yield SourceFile(location.name, None, error=f"corrupt_table: after row {index}: {str(exc)[:160]}")
