"""Mining seed functions: documented top-level functions out of raw source files.

A seed is a top-level ``def`` or ``async def`` whose first statement is a docstring (the
SelfCodeAlign seed definition). Each becomes one row holding the function's exact source
(decorators included), its line span, docstring, and the module-level imports it uses, so the
function can later be type-checked and executed on its own.

Any bytes are survivable: a file that cannot be used (unreadable entry, binary, undecodable,
syntax error, too deeply nested for the parser, empty, or without a documented function)
yields exactly one rejected row carrying its path and the reason; the batch goes on. A file
with no line starting with ``def``/``async def`` cannot hold a seed and is rejected as
``no_documented_functions`` without being parsed (most of a typical corpus: tests, classes).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from pathlib import Path
from typing import Callable, Iterator

import polars as pl

from amr_dagster.schemas import SEED_FUNCTION_COLUMNS
from amr_dagster.ids import row_id, stable_id
from amr_dagster.outcomes import ACCEPTED, REASON, STATUS, with_status
from amr_dagster.seeds.sources import SourceFile, content_hash, iter_source_files

_PHYSICAL_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_TOP_LEVEL_DEF = re.compile(r"^\f*(?:async[ \t]+)?def[ \t\\]", re.MULTILINE)

#: A check of a whole file's text: None when clean, else a rejection reason.
Screen = Callable[[str], "str | None"]


def file_id(batch: str, path: str, data: bytes | None, occurrence: int = 0) -> str:
    """The stable id of a seed file: batch, path and content hash (plus a repeat counter when
    the same path with the same bytes occurs more than once in one batch)."""
    if occurrence:
        return stable_id(batch, path, content_hash(data), occurrence)
    return stable_id(batch, path, content_hash(data))


def mine_source(src: SourceFile, batch: str, occurrence: int = 0, screen: Screen | None = None) -> list[dict]:
    """The seed rows of one file: one accepted row per documented top-level function, or
    exactly one rejected row (with the file's path and the reason) when there is none.

    ``screen`` (the benchmark decontaminator's ``check``) looks at files that yield no seed:
    a benchmark solution whose docstring is not its first statement (HumanEval/115 imports
    before it) is no seed in form, yet it must be reported as contaminated, not as a file
    without documented functions.
    """
    parent = file_id(batch, src.path, src.data, occurrence)

    def no_seed(text: str) -> list[dict]:
        hit = screen(text) if screen is not None else None
        return rejected(hit or "no_documented_functions")

    def rejected(reason: str) -> list[dict]:
        row = _empty_row(parent, batch, src)
        row.update(id=row_id(parent, ""), status="rejected", reject_reason=reason)
        return [row]

    if src.error is not None:
        return rejected(src.error)
    if src.data is None:
        return rejected("unreadable: no data")
    text, problem = decode_source(src.data)
    if problem is not None:
        return rejected(problem)
    assert text is not None
    if not _TOP_LEVEL_DEF.search(text):
        # Cheap pre-screen: a top-level function starts a line with "def"/"async def", so a
        # file without one (test modules, class-only modules) is not worth parsing.
        return no_seed(text)
    try:
        with warnings.catch_warnings():  # arbitrary code: no SyntaxWarning/DeprecationWarning noise
            warnings.simplefilter("ignore")
            module = ast.parse(text)
    except SyntaxError as exc:  # includes IndentationError and "too many nested parentheses"
        return rejected(f"syntax_error: line {exc.lineno}: {exc.msg}")
    except (RecursionError, MemoryError) as exc:
        return rejected(f"too_deeply_nested: {type(exc).__name__}")
    except ValueError as exc:
        return rejected(f"syntax_error: {exc}")

    lines = _PHYSICAL_LINE.findall(text)  # not str.splitlines: it also splits on \f, \x1c, \u2028...
    try:
        imports = _module_imports(module)
        rows = []
        seen_codes: dict[str, int] = {}
        for node in module.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not _has_docstring(node):
                continue
            rows.append(_function_row(node, lines, imports, parent, batch, src, seen_codes))
    except (RecursionError, MemoryError) as exc:
        return rejected(f"too_deeply_nested: {type(exc).__name__}")
    if not rows:
        return no_seed(text)
    return rows


def decode_source(data: bytes) -> tuple[str | None, str | None]:
    """Bytes to text, or a reason why these bytes are not Python source.

    UTF-8 is the default; a PEP 263 coding declaration (or a BOM) selects another encoding.
    """
    if not data.strip():
        return None, "empty_file"
    nul = data.find(b"\0")
    if nul >= 0:
        return None, f"binary_file: NUL byte at offset {nul}"
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:  # an invalid or unknown coding declaration
        return None, f"decode_error: {exc.msg if hasattr(exc, 'msg') else exc}"
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        detail = f"not {encoding} (byte {data[exc.start]:#04x} at offset {exc.start})" if isinstance(exc, UnicodeDecodeError) else str(exc)
        return None, f"decode_error: {detail}"
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, None


def iter_batch_rows(location: Path, batch: str, screen: Screen | None = None) -> Iterator[dict]:
    """Every row of one seed batch, streamed in the order the entries are read (for writing a
    huge batch chunk by chunk); ``mine_batch`` is the sorted, in-memory form."""
    occurrences: dict[str, int] = {}
    for src in iter_source_files(Path(location)):
        key = stable_id(src.path, content_hash(src.data))  # repeats of a path+bytes (or of a bad entry)
        occurrence = occurrences.get(key, 0)
        occurrences[key] = occurrence + 1
        yield from mine_source(src, batch, occurrence, screen)


def mine_batch(location: Path, batch: str, screen: Screen | None = None) -> pl.DataFrame:
    """Every row of one seed batch, in a deterministic order (source path, then line)."""
    return rows_to_frame(list(iter_batch_rows(location, batch, screen)))


def rows_to_frame(rows: list[dict]) -> pl.DataFrame:
    """Seed rows as a ``seed_functions`` frame (the schema of ``SEED_FUNCTION_COLUMNS``)."""
    columns = [c for c in SEED_FUNCTION_COLUMNS if c not in (STATUS, REASON)]
    schema = {c: SEED_FUNCTION_COLUMNS[c] for c in columns}
    frame = pl.DataFrame([{c: row[c] for c in columns} for row in rows], schema=schema, orient="row")
    frame = with_status(frame, [row[REASON] for row in rows]).select(list(SEED_FUNCTION_COLUMNS))
    return frame.sort(["source_path", "line_start"], nulls_last=False, maintain_order=True)


def mine_tree(root: Path, limit: int | None = None) -> Iterator[dict]:
    """Accepted function rows mined from a folder, in path order, at most ``limit`` of them.

    Streams file by file; benchmarks use it to build corpora of real functions.
    """
    if limit is not None and limit <= 0:
        return
    batch = Path(root).name
    count = 0
    for src in iter_source_files(Path(root)):
        for row in mine_source(src, batch):
            if row[STATUS] != ACCEPTED:
                continue
            yield row
            count += 1
            if limit is not None and count >= limit:
                return


# --- one function --------------------------------------------------------------------


def _has_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    first = node.body[0] if node.body else None
    return (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )


def _empty_row(parent: str, batch: str, src: SourceFile) -> dict:
    return {
        "id": None,
        "parent_id": parent,
        "batch": batch,
        "source_path": src.path,
        "repo": src.repo,
        "license": src.license,
        "line_start": None,
        "line_end": None,
        "name": None,
        "is_async": None,
        "docstring": None,
        "code": None,
        "imports": [],
        STATUS: None,
        REASON: None,
    }


def _function_row(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    lines: list[str],
    imports: list[tuple[str, str]],
    parent: str,
    batch: str,
    src: SourceFile,
    seen_codes: dict[str, int],
) -> dict:
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    end = node.end_lineno or node.lineno
    code = "".join(lines[start - 1 : end])
    if not code.endswith("\n"):
        code += "\n"
    # The same function text twice in one file would give two rows one id: number the repeats.
    repeat = seen_codes.get(code, 0)
    seen_codes[code] = repeat + 1
    used = _used_names(node) if imports else set()
    row = _empty_row(parent, batch, src)
    row.update(
        id=row_id(parent, code) if repeat == 0 else row_id(parent, code, repeat),
        line_start=start,
        line_end=end,
        name=node.name,
        is_async=isinstance(node, ast.AsyncFunctionDef),
        docstring=ast.get_docstring(node, clean=True),
        code=code,
        imports=_imports_for(used, imports),
        status="accepted",
        reject_reason=None,
    )
    return row


def _used_names(node: ast.AST) -> set[str]:
    """Every plain name the function reads (``os.path.join`` reads ``os``); ast.walk is
    iterative, so deep expressions cannot overflow the stack here."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _module_imports(module: ast.Module) -> list[tuple[str, str]]:
    """(bound name, minimal import statement) for every module-level import, in file order.

    Module level includes imports nested in top-level ``if``/``try``/``with`` blocks (e.g.
    ``try: import json except ImportError: ...``) but not those inside functions or classes.
    Star imports bind unknown names and are not carried.
    """
    found: list[tuple[str, str]] = []
    stack: list[ast.stmt] = list(reversed(module.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    found.append((alias.asname, f"import {alias.name} as {alias.asname}"))
                else:
                    found.append((alias.name.split(".")[0], f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            origin = "." * node.level + (node.module or "")
            for alias in node.names:
                if alias.name == "*":
                    continue
                bound = alias.asname or alias.name
                suffix = f" as {alias.asname}" if alias.asname else ""
                found.append((bound, f"from {origin} import {alias.name}{suffix}"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        else:
            children: list[ast.stmt] = []
            for field in ("body", "orelse", "finalbody"):
                children.extend(getattr(node, field, None) or [])
            for handler in getattr(node, "handlers", None) or []:
                children.extend(handler.body)
            for case in getattr(node, "cases", None) or []:
                children.extend(case.body)
            stack.extend(reversed(children))
    return found


def _imports_for(used: set[str], imports: list[tuple[str, str]]) -> list[str]:
    """The import statements binding names the function uses, in file order; when a name is
    bound twice (``try: import ujson as json except ImportError: import json``) the first wins."""
    chosen: dict[str, str] = {}
    for bound, statement in imports:
        if bound in used and bound not in chosen:
            chosen[bound] = statement
    return list(dict.fromkeys(chosen.values()))
