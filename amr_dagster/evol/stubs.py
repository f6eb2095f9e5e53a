"""Reading the teacher's module stubs: Python ``def`` stubs with typed signatures and docstrings.

``parse_modules`` reads them with ``ast`` and, when the whole block does not parse (a tiny model
often breaks one stub, or is cut off by ``max_tokens``), one stub at a time, repairing an
unterminated docstring. A response the teacher could not decompose becomes one rejected row
naming why (see ``amr_dagster.evol.decomposition``).
"""

from __future__ import annotations

import ast
import copy
import re
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache

from amr_dagster.evol.config import EvolConfig, evol_prompts


@dataclass
class ParsedModule:
    """One stub the teacher wrote; ``reason`` is None when it is a usable module."""

    name: str | None
    signature: str | None
    description: str | None
    parameters: list[dict[str, str]] = field(default_factory=list)
    return_type: str | None = None
    returns: str | None = None
    typed: bool = False
    reason: str | None = None
    source: str = ""


_FENCE_OPEN = re.compile(r"^[ \t]*```[ \t]*(?:python|py)?[ \t]*$", re.MULTILINE | re.IGNORECASE)
_DEF_LINE = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]", re.MULTILINE)
_SECTION = re.compile(r"^(args|arguments|parameters|params|returns?|yields?|raises|examples?|notes?)\s*:\s*(.*)$", re.I)
_DOCSTRING = re.compile(r"^\s*(\"\"\"|''')(.*?)(?:\1|$)", re.S)  # first triple-quoted text
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def stub_block(text: str) -> str:
    """The stub code in a teacher output.

    A completion prompt ends inside an open fence, so the text runs up to the closing fence; a
    chat answer opens its own fence (prose before it is ignored). Anything from the next
    ``### `` heading or fence on is dropped.
    """
    opened = _FENCE_OPEN.search(text)
    if opened and _DEF_LINE.search(text[: opened.start()]) is None:  # an opening fence: skip to it
        text = text[opened.end():]
    text = text.split("```", 1)[0]
    text = re.split(r"^###\s", text, maxsplit=1, flags=re.MULTILINE)[0]
    return text.strip("\n")


def _signature_text(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """``name(args) -> ret`` normalized by ``ast.unparse`` (whitespace and quotes made canonical)."""
    stub = copy.copy(fn)
    stub.body = [ast.Expr(ast.Constant(...))]
    stub.decorator_list = []
    first = ast.unparse(ast.fix_missing_locations(stub)).split("\n", 1)[0]
    return first[len("def "):].rstrip(":")


def _all_args(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    a = fn.args
    args = [*a.posonlyargs, *a.args]
    if a.vararg:
        args.append(a.vararg)
    args.extend(a.kwonlyargs)
    if a.kwarg:
        args.append(a.kwarg)
    return args


def parse_docstring(doc: str) -> tuple[str, dict[str, str], str | None]:
    """Google-style docstring -> (description, {parameter: description}, returns text)."""
    description: list[str] = []
    params: dict[str, str] = {}
    returns: list[str] = []
    section = "description"
    current: str | None = None
    arg_indent: int | None = None  # indentation of the first "name: ..." line; deeper is continuation
    for raw in doc.strip().splitlines():
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        header = _SECTION.match(line)
        if header:
            kind = header.group(1).lower()
            section = "args" if kind.startswith(("arg", "param")) else "returns" if kind.startswith(("return", "yield")) else "other"
            current, arg_indent = None, None
            if section == "returns" and header.group(2):
                returns.append(header.group(2))
            continue
        if section == "description":
            if not line and description:
                section = "after_description"
            elif line:
                description.append(line)
        elif section == "args" and line:
            arg = _ARG_LINE.match(line)
            if arg and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent if arg_indent is None else arg_indent
                current = str(arg.group(1))
                params[current] = arg.group(3).strip()
            elif current is not None:
                params[current] = (params[current] + " " + line).strip()
        elif section == "returns" and line:
            returns.append(line)
    return " ".join(description), params, (" ".join(returns) or None)


def _module_from_def(fn: ast.FunctionDef | ast.AsyncFunctionDef, source: str, require_typed: bool) -> ParsedModule:
    signature = _signature_text(fn)
    doc = ast.get_docstring(fn) or ""
    description, arg_docs, returns = parse_docstring(doc)
    parameters = [
        {
            "name": a.arg,
            "type": ast.unparse(a.annotation) if a.annotation is not None else "",
            "description": arg_docs.get(a.arg, ""),
        }
        for a in _all_args(fn)
    ]
    return_type = ast.unparse(fn.returns) if fn.returns is not None else None
    untyped = [p["name"] for p in parameters if not p["type"] and p["name"] not in ("self", "cls")]
    if return_type is None:
        untyped.append("return")
    reason = None
    if require_typed and untyped:
        reason = "untyped_signature: " + ", ".join(untyped)
    elif not description:
        reason = "missing_description"
    return ParsedModule(
        fn.name, signature, description or None, parameters, return_type, returns, not untyped, reason, source
    )


def _chunks(block: str) -> list[str]:
    """Split a stub block at each outermost ``def`` line (nested defs stay in their chunk), dedented."""
    found = [(m.start(), len(m.group(0)) - len(m.group(0).lstrip())) for m in _DEF_LINE.finditer(block)]
    outermost = min((indent for _, indent in found), default=0)
    starts = [start for start, indent in found if indent == outermost]
    return [textwrap.dedent(block[s:e]).strip("\n") for s, e in zip(starts, [*starts[1:], len(block)])]


def _parse_chunk(chunk: str, require_typed: bool) -> ParsedModule:
    """One stub that did not parse with its neighbours: repair what a cut-off leaves, else say why."""
    for candidate in (chunk, chunk + '\n    """', chunk + "\n    '''", chunk + "\n    ..."):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        fns = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if fns:
            return _module_from_def(fns[0], chunk, require_typed)
    def_line = chunk.splitlines()[0].strip()
    header = re.match(r"(?:async\s+)?def\s+(\w+)\s*(.*?):?\s*$", def_line)
    name = header.group(1) if header else None
    if header is None or not header.group(2).startswith("("):
        return ParsedModule(name, None, None, reason=f"missing_signature: {def_line[:80]}", source=chunk)
    try:
        tree = ast.parse(f"def {name}{header.group(2)}: ...")
    except SyntaxError:
        return ParsedModule(name, None, None, reason=f"invalid_signature: {def_line[:80]}", source=chunk)
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    # A broken body does not matter for a module: keep the docstring if one can be read.
    body = chunk.split("\n", 1)[1] if "\n" in chunk else ""
    doc = _DOCSTRING.search(body)
    if doc:
        fn.body = [ast.Expr(ast.Constant(textwrap.dedent(doc.group(2))))]
    return _module_from_def(fn, chunk, require_typed)


@lru_cache(maxsize=1)
def _example_names() -> frozenset[str]:
    """Names of the one-shot example's modules: a small model sometimes just repeats them."""
    example = evol_prompts()["decomposition"]["example"]["modules"]
    return frozenset(n.name for n in ast.parse(example).body if isinstance(n, ast.FunctionDef))


def parse_modules(
    text: str, config: EvolConfig | None = None, solution_code: str = ""
) -> tuple[list[ParsedModule], str | None]:
    """Teacher output -> (modules in order, output-level reject reason or None).

    Only top-level ``def`` stubs count (a body, if the model wrote one, is ignored). A stub named
    like a one-shot example module, a name the decomposed ``solution_code`` never uses, is
    ``copied_example``; a name already taken is ``duplicate_module_name``; stubs beyond
    ``max_modules`` are ``too_many_modules``. An output without a single ``def`` is
    ``unparsed_output``.
    """
    config = config or EvolConfig()
    block = stub_block(text)
    modules: list[ParsedModule] = []
    try:
        tree = ast.parse(block)
        fns = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        modules = [
            _module_from_def(fn, ast.get_source_segment(block, fn) or "", config.require_typed_signature) for fn in fns
        ]
    except SyntaxError:
        modules = [_parse_chunk(c, config.require_typed_signature) for c in _chunks(block)]
    if not modules:
        detail = "empty output" if not text.strip() else "no def stub found"
        return [], f"unparsed_output: {detail}"
    copied = {name for name in _example_names() if name not in solution_code}
    seen: set[str] = set()
    usable = 0
    for m in modules:
        if m.reason is not None:
            continue
        if m.name in copied:
            m.reason = f"copied_example: {m.name}"
        elif m.name in seen:
            m.reason = f"duplicate_module_name: {m.name}"
        elif usable >= config.max_modules:
            m.reason = f"too_many_modules: more than {config.max_modules}"
        else:
            seen.add(m.name or "")
            usable += 1
    return modules, None
