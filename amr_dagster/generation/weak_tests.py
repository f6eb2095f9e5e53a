"""Whether a sample's own tests can tell right code from wrong ("tests that test").

A sample passes when its code passes its own tests, so the tests are the only evidence. Tests
that never touch the solution (they check a literal, or a helper they define themselves), or
that make a single assertion, pass for trivial or wrong code. Such a sample is rejected at
parse time with its own reason, before it costs a sandbox run:

- ``tests_never_call_code``: no name the code defines at module level (function, class,
  variable, including methods reached through a class) is used by the tests, or every such
  name is redefined by the tests themselves (they would test their own copy).
- ``too_few_assertions: N``: fewer than ``min_assertions`` assertions in all, counted
  statically: ``assert`` statements plus calls of ``assert*`` methods (``self.assertEqual``,
  ``np.testing.assert_allclose``) and ``pytest.raises`` blocks. An assertion in a loop counts
  once, and so do identical assertions written several times (a small model often repeats
  ``assert f("hello") == "hello"``): the rule asks for two distinct checks, not two executions.
  An assertion that cannot fail is no check at all and is not counted: a constant
  (``assert True``) or a comparison of an expression with itself (``assert f("cat") ==
  f("cat")``, which the embedded model writes when it cannot compute the expected value), and
  neither is one inside a test function that a later ``def`` of the same name replaces.
"""

from __future__ import annotations

import ast

NEVER_CALLS = "tests_never_call_code"
TOO_FEW = "too_few_assertions"


def defined_names(tree: ast.AST) -> set[str]:
    """Names bound at the module level of ``tree`` (defs, classes, assignments, imports excluded)."""
    names: set[str] = set()
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def used_names(tree: ast.AST) -> set[str]:
    """Every name the tests read."""
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


_REFLEXIVE = (ast.Eq, ast.LtE, ast.GtE, ast.Is)


def cannot_fail(test: ast.expr) -> bool:
    """A constant, or ``x == x`` (also ``<=``, ``>=``, ``is``) with the same expression both sides."""
    if isinstance(test, ast.Constant):
        return True
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], _REFLEXIVE):
        return ast.dump(test.left) == ast.dump(test.comparators[0])
    return False


def shadowed(tree: ast.AST) -> set[int]:
    """``id()`` of each module-level def or class that a later one of the same name replaces:
    it never runs (the model sometimes writes ``def test_x`` twice)."""
    last: dict[str, ast.AST] = {}
    body = getattr(tree, "body", [])
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            last[node.name] = node
    return {id(n) for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and last[n.name] is not n}


def _live_nodes(tree: ast.AST):
    """``ast.walk`` without the shadowed module-level definitions."""
    dead = shadowed(tree)
    todo = [tree]
    while todo:
        node = todo.pop()
        if id(node) in dead:
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def count_assertions(tree: ast.AST) -> int:
    """Distinct ``assert`` statements, ``assert*`` method calls and ``pytest.raises`` context
    managers (two assertions with the same source text count once; one that cannot fail, or one
    in a definition a later one of the same name replaces, none)."""
    seen: set[str] = set()
    for node in _live_nodes(tree):
        if isinstance(node, ast.Assert):
            if not cannot_fail(node.test):
                seen.add(ast.dump(node))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name.lower().startswith("assert") or name == "raises":
                seen.add(ast.dump(node))
    return len(seen)


def weak_tests_reason(code_tree: ast.AST, tests_tree: ast.AST, min_assertions: int = 2, require_call: bool = True) -> str | None:
    """The rejection reason for tests that cannot tell right code from wrong, else None."""
    if require_call:
        offered = defined_names(code_tree) - defined_names(tests_tree)
        if not offered & used_names(tests_tree):
            return NEVER_CALLS
    found = count_assertions(tests_tree)
    if found < min_assertions:
        return f"{TOO_FEW}: {found} < {min_assertions}"
    return None
