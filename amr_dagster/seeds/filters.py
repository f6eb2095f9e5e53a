"""Quality filters on mined seed functions (the ``filtered_seeds`` stage).

Every row keeps its place; each check that fails sets the row's ``reject_reason``, and the
first failing check wins. The checks run in this fixed order:

1. ``contaminated``     benchmark decontamination (first, so every planted benchmark solution
                        is reported as contaminated whatever else is wrong with it)
2. ``syntax_error``     the function's code must parse on its own
3. ``no_return_value``  a ``return <value>`` in the function's own body (nested functions,
                        lambdas and classes don't count; ``return None`` doesn't either).
                        Generators count as returning values: a ``yield`` in the own body
                        passes, because ``list(f(x))`` is as testable as ``f(x)``.
4. ``todo_marker``      TODO / FIXME / XXX / HACK (any case) or BUG (upper case) in a
                        comment or in the docstring
5. ``denied_import``    an import from the deny-list, inside the function or among the module
                        imports it uses; matched on the top-level module (``os.path`` is ``os``)
6. ``too_long``         more than ``max_lines`` lines (decorators and docstring included)
7. ``no_parameters``    at least one parameter; a leading ``self``/``cls`` doesn't count, since
                        a top-level function taking only ``self`` is a detached method whose
                        input is an object the seed doesn't define
8. ``type_error`` / ``typecheck_timeout``  pyright on the survivors (``typecheck=False`` skips)
9. ``docstring_judge``  the LLM judge on the survivors only, when one is given; a ``no`` or an
                        unparsable answer rejects (only a clear ``yes`` is kept)

Checks 2-7 are cheap and local; pyright and the judge, the expensive ones, see only rows that
passed everything before them.
"""

from __future__ import annotations

import ast
import io
import re
import time
import tokenize
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import polars as pl

from amr_dagster.seeds.decontamination import (
    DEFAULT_EXACT_MIN_TOKENS,
    DEFAULT_NGRAM_N,
    DEFAULT_NGRAM_THRESHOLD,
    DEFAULT_PROSE_MIN_TOKENS,
    Decontaminator,
)
from amr_dagster.outcomes import ACCEPTED, REASON, STATUS, reason_prefix, with_status
from amr_dagster.seeds.typecheck import typecheck_sources

#: rows -> one (verdict, raw answer) per row; verdict is "yes", "no" or "unparsed".
DocstringJudge = Callable[[list[dict]], list[tuple[str, str]]]


CHECK_ORDER = (
    "contaminated",
    "syntax_error",
    "no_return_value",
    "todo_marker",
    "denied_import",
    "too_long",
    "no_parameters",
    "type_error",
    "typecheck_timeout",
    "docstring_judge",
)


@dataclass(frozen=True)
class FilterConfig:
    """What the filters accept; the defaults follow SelfCodeAlign's seed filtering."""

    max_lines: int = 150
    denied_imports: tuple[str, ...] = (
        "argparse", "os", "subprocess", "sys", "setuptools", "distutils", "matplotlib", "seaborn",
    )
    typecheck: bool = True
    typecheck_timeout_s: float = 300.0
    typecheck_batch_size: int = 200
    #: ask the generator whether the docstring suffices to re-implement the function
    docstring_judge: bool = True
    #: extra benchmark JSONL files to decontaminate against (HumanEval is always included)
    benchmark_files: tuple[str, ...] = ()
    #: word n-gram size of the overlap test (13: see amr_dagster.seeds.decontamination)
    ngram_n: int = DEFAULT_NGRAM_N
    ngram_threshold: float = DEFAULT_NGRAM_THRESHOLD
    exact_min_tokens: int = DEFAULT_EXACT_MIN_TOKENS
    prose_min_tokens: int = DEFAULT_PROSE_MIN_TOKENS
    #: the docstring judge (see amr_dagster.seeds.docstring_judge): "signature" (small-model
    #: default) or "paper" (SelfCodeAlign's: code + docstring, yes-votes must outnumber no-votes)
    judge_mode: str = "signature"
    judge_votes: int = 1
    judge_temperature: float = 0.7


def filter_seeds(
    frame: pl.DataFrame,
    config: FilterConfig,
    judge: DocstringJudge | None = None,
    decontaminator: Decontaminator | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Judge every row of ``frame`` (accepted ``seed_functions`` rows).

    Returns the same rows, in the same order, with ``status``/``reject_reason`` set and the
    columns ``judge_verdict``/``judge_answer`` (null where the judge did not run), and a stats
    dict: rejections per check, wall time per check, pyright batches and errors per rule.
    Rows that arrive already rejected keep their reason and are not checked again.
    """
    if decontaminator is None:
        decontaminator = decontaminator_for(config)
    rows = frame.to_dicts()
    reasons: list[str | None] = [
        (row.get(REASON) or "rejected") if row.get(STATUS, ACCEPTED) != ACCEPTED else None for row in rows
    ]
    already_rejected = sum(r is not None for r in reasons)
    wall: dict[str, float] = {}

    def pending() -> list[int]:
        return [i for i, reason in enumerate(reasons) if reason is None]

    started = time.perf_counter()
    todo = pending()
    for i, reason in zip(todo, decontaminator.check_many([rows[i]["code"] or "" for i in todo])):
        reasons[i] = reason
    wall["decontamination"] = time.perf_counter() - started

    started = time.perf_counter()
    denied = frozenset(config.denied_imports)
    for i in pending():
        row = rows[i]
        reasons[i] = rule_violation(row["code"] or "", row.get("imports") or [], row.get("docstring"), config.max_lines, denied)
    wall["rules"] = time.perf_counter() - started

    stats: dict[str, Any] = {}
    if config.typecheck:
        todo = pending()
        report = typecheck_sources(
            [(rows[i].get("imports") or [], rows[i]["code"]) for i in todo],
            timeout_s=config.typecheck_timeout_s,
            batch_size=config.typecheck_batch_size,
        )
        for i, reason in zip(todo, report.reasons):
            reasons[i] = reason
        wall["typecheck"] = report.wall_s
        stats.update(
            pyright_wall_s=round(report.wall_s, 3),
            pyright_batches=report.batches,
            pyright_timed_out_batches=report.timed_out_batches,
            pyright_errors_by_rule=dict(sorted(report.errors_by_rule.items())),
        )

    verdicts: list[str | None] = [None] * len(rows)
    answers: list[str | None] = [None] * len(rows)
    if judge is not None:
        started = time.perf_counter()
        todo = pending()
        results = judge([rows[i] for i in todo]) if todo else []
        if len(results) != len(todo):
            raise ValueError(f"docstring judge returned {len(results)} answers for {len(todo)} rows")
        for i, (verdict, answer) in zip(todo, results):
            verdicts[i], answers[i] = verdict, answer
            if verdict != "yes":
                reasons[i] = f"docstring_judge: {verdict}"
        wall["judge"] = time.perf_counter() - started

    base = frame.drop([c for c in (STATUS, REASON, "judge_verdict", "judge_answer") if c in frame.columns])
    out = with_status(
        base.with_columns(
            pl.Series("judge_verdict", verdicts, dtype=pl.String),
            pl.Series("judge_answer", answers, dtype=pl.String),
        ),
        reasons,
    ).select([*base.columns, STATUS, REASON, "judge_verdict", "judge_answer"])
    by_check = Counter(reason_prefix(r) for r in reasons if r is not None)
    stats.update(
        input_rows=len(rows),
        already_rejected=already_rejected,
        accepted=sum(r is None for r in reasons),
        rejected=sum(r is not None for r in reasons),
        rejected_by_check={k: by_check[k] for k in sorted(by_check, key=_check_rank)},
        judged=sum(v is not None for v in verdicts),
        wall_s_by_check={k: round(v, 3) for k, v in wall.items()},
    )
    return out, stats


def decontaminator_for(config: FilterConfig) -> Decontaminator:
    """The decontaminator a config describes (HumanEval plus its benchmark files); build it
    once and pass it to every ``filter_seeds`` call when filtering many frames."""
    return Decontaminator.default(
        config.benchmark_files,
        n=config.ngram_n,
        ngram_threshold=config.ngram_threshold,
        exact_min_tokens=config.exact_min_tokens,
        prose_min_tokens=config.prose_min_tokens,
    )


def _check_rank(family: str) -> tuple[int, str]:
    return (CHECK_ORDER.index(family) if family in CHECK_ORDER else len(CHECK_ORDER), family)


# --- the cheap rules (checks 2-7) ------------------------------------------------------

_MARKER = re.compile(r"(?i:\b(TODO|FIXME|XXX|HACK)\b)|\b(BUG)\b")


def rule_violation(
    code: str,
    imports: Sequence[str],
    docstring: str | None,
    max_lines: int,
    denied_imports: frozenset[str],
) -> str | None:
    """The first failing cheap rule of one function (checks 2-7), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = ast.parse(code)
        function = module.body[0] if module.body else None
    except (SyntaxError, ValueError) as exc:
        return f"syntax_error: {exc}"
    except (RecursionError, MemoryError) as exc:
        return f"syntax_error: too deeply nested ({type(exc).__name__})"
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return "syntax_error: code is not a function definition"
    if not returns_value(function):
        return "no_return_value"
    marker = find_marker(code, docstring)
    if marker:
        return f"todo_marker: {marker}"
    module_name = denied_import(function, imports, denied_imports, has_import_statement="import" in code)
    if module_name:
        return f"denied_import: {module_name}"
    lines = code.count("\n") + (0 if code.endswith("\n") else 1)
    if lines > max_lines:
        return f"too_long: {lines} lines"
    if not has_parameters(function):
        return "no_parameters"
    return None


def _own_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of the function's own body, lazily (callers stop early), last statement
    first, not descending into nested scopes."""
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
    stack: list[ast.AST] = [node for node in function.body if not isinstance(node, scopes)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, scopes))


def returns_value(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A ``return <value>`` (not ``return None``) or a ``yield`` in the function's own body."""
    for node in _own_nodes(function):
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                return True
    return False


def find_marker(code: str, docstring: str | None) -> str | None:
    """A TODO-like marker in a comment of ``code`` or in the docstring, if any."""
    if not _MARKER.search(code) and not (docstring and _MARKER.search(docstring)):
        return None  # the common case: no marker anywhere, no need to tokenize
    texts = [docstring or ""]
    try:
        texts.extend(
            token.string
            for token in tokenize.generate_tokens(io.StringIO(code).readline)
            if token.type == tokenize.COMMENT
        )
    except (tokenize.TokenError, SyntaxError):
        texts.append(code)  # cannot tell comments from code: be strict
    for text in texts:
        match = _MARKER.search(text)
        if match:
            return match.group(0)
    return None


def denied_import(
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    imports: Sequence[str],
    denied: frozenset[str],
    has_import_statement: bool = True,
) -> str | None:
    """The first denied top-level module imported by the function or by its module imports."""
    nodes: list[ast.AST] = []
    if has_import_statement:
        nodes.extend(n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom)))
    for statement in imports:
        try:
            nodes.extend(ast.parse(statement).body)
        except SyntaxError:
            continue
    for node in nodes:
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            if top in denied:
                return top
    return None


def has_parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """At least one parameter other than a leading ``self``/``cls``."""
    args = function.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)]
    if positional and positional[0] in ("self", "cls"):
        positional = positional[1:]
    return bool(positional or args.kwonlyargs or args.vararg or args.kwarg)
