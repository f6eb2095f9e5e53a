"""Keys that say two exported pairs teach the same thing (SelfCodeAlign's sanitizing, at export).

Exported pairs are compared with every pair kept before them (in the export's fixed order):

- ``exact_key``: the text without any whitespace; equal instructions or responses are copies.
- ``name_sets``: the set of function names and the set of class names a solution defines,
  compared case- and underscore-insensitively. A model that found one task easy writes it
  again and again under new wording; the same set of names is the cheap tell, so a pair whose
  non-empty function-name set (or class-name set) was seen before is dropped.
- ``code_representation``: only the top-level functions and classes, docstrings removed,
  re-printed by ``ast.unparse`` (which drops comments and normalizes layout). Near-dedup on it
  finds the same solution under different prose, comments or driver code.
"""

from __future__ import annotations

import ast
from typing import Iterable

import xxhash


def exact_key(text: str | None) -> str:
    return "".join((text or "").split())


def _squash(name: str) -> str:
    return name.replace("_", "").lower()


def name_sets(code: str) -> tuple[frozenset[str], frozenset[str]]:
    """(function names, class names) defined anywhere in ``code``; raises SyntaxError."""
    functions: set[str] = set()
    classes: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.add(_squash(node.name))
        elif isinstance(node, ast.ClassDef):
            classes.add(_squash(node.name))
    return frozenset(functions), frozenset(classes)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]


def code_representation(code: str) -> str:
    """Top-level defs and classes without docstrings or comments; raises SyntaxError."""
    tree = ast.parse(code)
    tree.body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    _strip_docstrings(tree)
    return ast.unparse(tree)


def key_hash(key: str | frozenset[str]) -> int:
    """64-bit key of a whitespace-free text or a name set (what ``SeenPairs`` keeps: small to
    store across batches; a collision needs ~2**32 keys to become likely)."""
    text = key if isinstance(key, str) else "\x1f".join(sorted(key))
    return xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass"))


TEXT, NAMES = "text", "names"


class SeenPairs:
    """What earlier pairs held: whitespace-free texts and name sets, as 64-bit keys. ``judge``
    returns the rejection reason for a new pair (and remembers it when kept). ``added`` lists
    the (kind, key) pairs remembered since creation, so a caller can persist them per batch."""

    def __init__(self, exact: bool = True, names: bool = True, known: Iterable[tuple[str, int]] = ()) -> None:
        self.exact, self.names = exact, names
        self.texts: set[int] = set()
        self.name_sets: set[int] = set()
        for kind, key in known:
            (self.texts if kind == TEXT else self.name_sets).add(int(key))
        self.added: list[tuple[str, int]] = []

    def judge(self, instruction: str, response: str, code: str) -> str | None:
        keys = (key_hash(exact_key(instruction)), key_hash(exact_key(response)))
        if self.exact:
            for field, key in zip(("instruction", "response"), keys):
                if key in self.texts:
                    return f"output_exact_duplicate: {field}"
        sets: tuple[frozenset[str], ...] = ()
        if self.names:
            try:
                sets = name_sets(code)
            except SyntaxError:
                return "output_code_representation: syntax error"
            for kind, found in zip(("functions", "classes"), sets):
                if found and key_hash(found) in self.name_sets:
                    return f"output_repeated_names: {kind} {','.join(sorted(found))}"
        for key in keys:
            if key not in self.texts:
                self.texts.add(key)
                self.added.append((TEXT, key))
        for found in sets:
            if found and key_hash(found) not in self.name_sets:
                self.name_sets.add(key_hash(found))
                self.added.append((NAMES, key_hash(found)))
        return None
