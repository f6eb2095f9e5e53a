"""Python functions as the module library sees them: their parts (name, signature, docstring,
body), the text that is embedded for an entry and for a query, and a function's source made to
run on its own (with the imports and top-level helpers it uses)."""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class FunctionParts:
    """One function split the way the library needs it."""

    name: str
    signature: str  # "name(a: int, b: int) -> int" (with "async " first for coroutines)
    description: str  # cleaned docstring, "" when there is none
    body: str  # the body's source without the docstring, dedented
    code: str  # the whole definition, decorators included


def normalise_signature(signature: str, name: str = "") -> str:
    """``def f(x) -> int:`` -> ``f(x) -> int``; a bare parameter list gets the name in front."""
    sig = " ".join(signature.strip().split())
    for prefix in ("async def ", "def "):
        if sig.startswith(prefix):
            sig = ("async " if prefix.startswith("async") else "") + sig[len(prefix):]
    sig = sig.rstrip(":").strip()
    if name and not (sig.startswith(name) or sig.startswith(f"async {name}")):
        sig = f"{name}{sig}" if sig.startswith("(") else f"{name}: {sig}"
    return sig


def module_text(name: str, signature: str, description: str, body: str = "") -> str:
    """The text embedded for a module: signature (with the name), description, then body."""
    parts = [normalise_signature(signature or name, name), (description or "").strip(), (body or "").strip()]
    return "\n".join(p for p in parts if p)


def query_text(name: str, signature: str, description: str) -> str:
    """The text embedded for a decomposed module looking for similar library entries."""
    return module_text(name, signature, description)


def _function_parts(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> FunctionParts:
    prefix = "async " if isinstance(node, ast.AsyncFunctionDef) else ""
    signature = f"{prefix}{node.name}({ast.unparse(node.args)})"
    if node.returns is not None:
        signature += f" -> {ast.unparse(node.returns)}"
    docstring = ast.get_docstring(node, clean=True) or ""
    statements = node.body[1:] if docstring and len(node.body) > 0 else node.body
    if docstring and not statements:
        body = ""
    else:
        first = statements[0]
        body = textwrap.dedent("\n".join(lines[first.lineno - 1 : node.end_lineno]))
    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
    code = textwrap.dedent("\n".join(lines[start - 1 : node.end_lineno]))
    return FunctionParts(node.name, signature, docstring, body.strip("\n"), code.strip("\n"))


def parse_functions(source: str) -> list[FunctionParts]:
    """Top-level functions of ``source`` in order (raises SyntaxError on unparsable code)."""
    source = textwrap.dedent(source)
    tree = ast.parse(source)
    lines = source.splitlines()
    return [
        _function_parts(node, lines)
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def _is_trivial(body: str) -> bool:
    """A body that does nothing worth reusing: only pass, ``...`` or raise NotImplementedError."""
    try:
        statements = ast.parse(body).body
    except SyntaxError:
        return False
    for statement in statements:
        if isinstance(statement, ast.Pass):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue
        if isinstance(statement, ast.Raise) and "NotImplementedError" in ast.unparse(statement):
            continue
        return False
    return True


def _names_used(nodes: Iterable[ast.AST]) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def _top_level_binding(node: ast.stmt) -> list[str]:
    """Names a top-level def, class or simple assignment binds (imports are handled apart)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [t.id for t in targets if isinstance(t, ast.Name)]
    return []


def standalone_code(tree: ast.Module, function: ast.stmt, lines: list[str]) -> str:
    """The function's source preceded by what it needs from its module to run on its own:
    the imports binding names it uses, and the top-level helpers, classes and constants it
    refers to (transitively), in their original order."""
    bound: dict[str, ast.stmt] = {}
    for node in tree.body:
        for name in _top_level_binding(node):
            bound.setdefault(name, node)
    needed: list[ast.stmt] = [function]
    frontier = [function]
    while frontier:
        used = _names_used(frontier)
        frontier = [bound[n] for n in sorted(used) if n in bound and all(bound[n] is not k for k in needed)]
        frontier = list({id(n): n for n in frontier}.values())
        needed.extend(frontier)
    used = _names_used(needed)
    imports: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            keep = [a for a in node.names if (a.asname or a.name.split(".")[0]) in used]
            if keep:
                clone = ast.Import(names=keep) if isinstance(node, ast.Import) else ast.ImportFrom(
                    module=node.module, names=keep, level=node.level
                )
                imports.append(ast.unparse(clone))
    order = {id(node): i for i, node in enumerate(tree.body)}
    pieces = []
    for node in sorted(needed, key=lambda n: order[id(n)]):
        decorators = getattr(node, "decorator_list", [])
        start = min([d.lineno for d in decorators] + [node.lineno])
        pieces.append(textwrap.dedent("\n".join(lines[start - 1 : node.end_lineno])).strip("\n"))
    head = "\n".join(imports) + "\n\n" if imports else ""
    return head + "\n\n".join(pieces)
