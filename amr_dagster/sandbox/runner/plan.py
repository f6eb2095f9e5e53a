"""The test plan: what counts as one test, found by parsing the tests (never executing them),
and the supervisor's compiling of tests and program (compiling never runs code)."""

from __future__ import annotations

import ast

from .wire import TESTS_FILE, PROGRAM_FILE


FOREIGN_RUNNER_CALLS = frozenset({("unittest", "main"), ("pytest", "main")})


def _is_main_guard(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.If) or stmt.orelse:
        return False
    test = stmt.test
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _flatten(body: list[ast.stmt]) -> list[ast.stmt]:
    flat: list[ast.stmt] = []
    for stmt in body:
        flat.extend(_flatten(stmt.body) if _is_main_guard(stmt) else [stmt])
    return flat


def _walk_outside_defs(node: ast.AST):
    """Nodes of ``node`` not inside a nested function, lambda or class body."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for child in ast.iter_child_nodes(current):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.append(child)


def _scan(node: ast.AST) -> tuple[bool, set[str]]:
    """Whether ``node`` asserts, and the plain names it calls (nested defs excluded): one walk."""
    asserts, called = False, set()
    for n in _walk_outside_defs(node):
        if isinstance(n, ast.Assert):
            asserts = True
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            called.add(n.func.id)
    return asserts, called


def _is_foreign_runner_call(stmt: ast.stmt) -> bool:
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and (func.value.id, func.attr) in FOREIGN_RUNNER_CALLS
    )


def _is_test_class(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.ClassDef):
        return False
    base_names = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in stmt.bases}
    return stmt.name.startswith("Test") or any(name.endswith("TestCase") for name in base_names)


def _label(stmt: ast.stmt, source_lines: list[str]) -> str:
    line = source_lines[stmt.lineno - 1].strip() if 0 < stmt.lineno <= len(source_lines) else ""
    return f"line {stmt.lineno}: {line[:80]}"


def plan_tests(source: str) -> tuple[list[ast.stmt], list[tuple]]:
    """Statements of the tests (flattened) and the ordered steps that run them.

    A step is ``("setup", i, label)``, ``("test", i, label)`` (statement ``i`` is one test),
    ``("function", name, label)`` or ``("method", (class_name, name), label)``.
    Raises ``SyntaxError``/``ValueError`` for source that does not parse.
    """
    tree = ast.parse(source, filename=TESTS_FILE)
    stmts = _flatten(tree.body)
    lines = source.splitlines()
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    checkers = {
        s.name
        for s in stmts
        if isinstance(s, defs)
        and (
            s.name.startswith("test")
            or s.name == "check"
            or any(isinstance(n, ast.Assert) for n in _walk_outside_defs(ast.Module(body=s.body, type_ignores=[])))
        )
    }
    scans = {i: _scan(s) for i, s in enumerate(stmts) if not isinstance(s, (*defs, ast.ClassDef))}
    called_at_top: set[str] = set().union(*(called for _, called in scans.values()))

    steps: list[tuple] = []
    for i, s in enumerate(stmts):
        if _is_foreign_runner_call(s):
            continue
        if isinstance(s, (*defs, ast.ClassDef, ast.Import, ast.ImportFrom)):
            steps.append(("setup", i, _label(s, lines)))
            continue
        asserts, called = scans[i]
        kind = "test" if asserts or (called & checkers) else "setup"
        steps.append((kind, i, _label(s, lines)))
    for s in stmts:
        if isinstance(s, defs) and s.name.startswith("test") and s.name not in called_at_top:
            steps.append(("function", s.name, f"line {s.lineno}: {s.name}"))
        elif _is_test_class(s):
            for m in s.body:
                if isinstance(m, defs) and m.name.startswith("test"):
                    steps.append(("method", (s.name, m.name), f"line {m.lineno}: {s.name}.{m.name}"))
    return stmts, steps


def compile_statements(stmts: list[ast.stmt]) -> list:
    """Each test statement compiled on its own, or ``(error name, message)`` where it does not.

    The supervisor compiles (compiling never runs code); the child only executes. A statement
    the compiler rejects (``return`` at top level...) fails when its step runs, as it would have.
    """
    compiled: list = []
    for stmt in stmts:
        try:
            compiled.append(compile(ast.Module(body=[stmt], type_ignores=[]), TESTS_FILE, "exec", dont_inherit=True))
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, SystemError) as exc:
            compiled.append((type(exc).__name__, str(exc)))
    return compiled


def count_planned_tests(source: str) -> int:
    """How many tests the runner would count in ``source`` (0 if it does not parse)."""
    try:
        return sum(1 for step in plan_tests(source)[1] if step[0] != "setup")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 0


def compile_program(source: str):
    """The program's code object, or ``(error name, message)`` if it does not compile (the
    child then reports it as the program raising, as if it had compiled it itself)."""
    try:
        return compile(source, PROGRAM_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, SystemError) as exc:
        return (type(exc).__name__, str(exc))
