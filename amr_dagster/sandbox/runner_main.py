"""The harness-owned test runner that runs INSIDE a sandbox (stdlib only, any Python >= 3.9).

Every backend runs this file with the sandbox's own ``python3``; it never runs on the host with
untrusted code. It executes a program (``solution.py``) and its tests (``tests.py``) and reports
how many tests really ran and passed. Two modes:

* one-shot: ``python3 -I _amr_runner.py`` in a work folder holding the job files; stdin holds
  the job's nonce; stdout receives exactly one line ``AMR-REPORT <json>``.
* server: ``python3 -I _amr_runner.py --serve [--scratch DIR ...]``, the long-lived process of a
  pre-forked worker; jobs and reports travel as length-prefixed frames over stdin/stdout.

Threat model
------------
The program and its tests are untrusted and adversarial (model-written code may call
``os._exit(0)``, patch the test runner, skip tests, print a fake report, fork, kill, spin).

* Trusted: the *supervisor* (this module's code in the process that never executes user code).
  It parses and compiles the tests and the program (compiling never runs code), has one fresh
  *child* forked per job that runs them, and alone decides the verdict from what it observes.
* The child closes every descriptor it inherited except a result pipe and fresh stdout/stderr
  capture pipes *before* user code runs, so user code can reach neither the supervisor's report
  channel nor its request channel. In server mode the supervisor is pid 1 of the sandbox's pid
  namespace: user code cannot kill or stop it (SIGKILL/SIGSTOP from inside are ignored for an
  init), and it is non-dumpable (no ``/proc/1/mem``, ``/proc/1/fd``, ``/proc/1/environ`` access
  for a same-uid process without capabilities). There the children are forked by a *fork server*
  (``_Zygote``, the supervisor's own child, which never runs user code; it exists so that the
  supervisor never forks, see its docstring). After each job, if any process but the fork server
  is left, the supervisor ``kill(-1, SIGKILL)``s every other process of the namespace (the fork
  server too, restarted for the next job) and reaps them, so no descendant survives a job. A job
  that kills or stops the fork server fails (or times out) and gets the worker replaced.
* The nonce: the host sends it to the supervisor only *after* the child and all its descendants
  are dead (one-shot: the supervisor reads stdin only after the child died; server: the nonce is
  a separate frame read after the job) and the server zeroes it after use, so no process that
  runs user code ever has it in memory. A report without the right nonce is an infra error.
* Counting: the supervisor knows the test plan (it parsed the tests), so the child cannot invent
  tests. The child reports per test ``begin``/``pass``/``fail``/``skip`` lines tagged with a per-job
  random token; the supervisor accepts only well-formed lines with the token, in plan order, each
  ``begin`` followed by its own outcome, and a final ``done`` written by the runner after the last
  test. A program passes only if >= 1 test ran, every planned test passed, ``done`` arrived and the
  child exited 0 through the runner. Hence: ``os._exit(0)``/``sys.exit(0)`` at import or inside a
  test -> not done / test failed; skipped tests (unittest/pytest skip) -> skip, not pass; a printed
  fake report -> it is only captured stdout; an unknown-token or out-of-order line -> tampering.
* In-process tampering the child's runner detects: ``assert`` cannot be disabled by rebinding
  ``builtins.AssertionError`` (the bytecode loads the real class); a Python audit hook installed
  before user code blocks and reports tracing/profiling hooks, ``gc`` object walks, ``ctypes``
  and opening ``/proc/*/{mem,fd,environ}``; identities of the ``builtins`` and
  ``unittest.TestCase`` members the tests name (and the runner calls) are compared after the
  program and after each test (``watched_names``); calls to other test runners
  (``unittest.main()``, ``pytest.main()``) are not executed: this runner is the test runner.

Residual risk (documented, not solved): tests execute in the same interpreter as the program, so
a program written *against this harness* can still subvert test semantics in-process (e.g. return
an object whose ``__eq__`` is always true, or walk ``frame.f_back`` up to the runner's frame to
read the token). Such code stays fully contained by the sandbox; it can only lie about itself.

Test plan (what counts as one test)
-----------------------------------
Top-level statements of the tests run in order in the program's namespace (``solution``, so both
``from solution import f`` and bare ``f`` work); bodies of ``if __name__ == "__main__":`` blocks
are treated as top level. One test is: a top-level statement containing an ``assert`` (outside
nested defs) or calling a checker function (a tests-defined function whose body asserts, or named
``test*``/``check``) -- e.g. HumanEval's ``check(candidate)`` call is one test; a top-level
``def test*`` function never called at top level (pytest style); a ``test*`` method of a
``Test*`` class or ``unittest.TestCase`` subclass. Other statements are setup. A small
built-in ``pytest`` (``raises``, ``approx``, ``skip``, ``mark.parametrize``...) stands in for
the real one; a parametrized test is one test that passes only if every parameter set passes.
Test functions needing other arguments (pytest fixtures) fail with ``needs fixtures``.
"""

from __future__ import annotations

import _signal
import ast
import builtins
import fcntl
import functools
import gc
import json
import marshal
import operator
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
import unittest

REPORT_PREFIX = "AMR-REPORT"
MANIFEST_FILE = "_amr_job.json"
PROGRAM_FILE = "solution.py"
TESTS_FILE = "tests.py"
PROGRAM_MODULE = "solution"
RESULT_FD = 3
DETAIL_CHARS = 300
MAX_RESULT_BYTES = 1 << 20
RESULT_POLL_S = 0.05
FRAME_HEADER = 8

# Modules imported once by a worker so forked children start warm (throughput). Not here on
# purpose: ``threading`` and what imports it (``asyncio``, ``logging``, ``unittest.mock``):
# with it loaded, every fork runs threading's after-fork hooks in Python (measured: +0.4 ms of
# CPU per job, more than a whole HumanEval program), so the rare job using them imports them.
WARM_MODULES = (
    "typing", "collections", "collections.abc", "math", "re", "itertools", "functools", "heapq",
    "bisect", "string", "json", "random", "dataclasses", "enum", "fractions", "decimal",
    "statistics", "hashlib", "copy", "operator", "datetime", "unittest", "inspect", "base64",
    "resource", "io", "textwrap", "abc", "numbers", "array", "struct", "traceback", "contextlib",
)

SKIP_EXCEPTION_NAMES = frozenset({"SkipTest", "Skipped", "SkipException"})
FOREIGN_RUNNER_CALLS = frozenset({("unittest", "main"), ("pytest", "main")})


# --------------------------------------------------------------------------------------------
# The plan: parse only, never execute.
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# A minimal ``pytest`` for the tests (the sandbox's python has none): the parts tests use.
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _pytest_shim():
    """The ``pytest`` stand-in, built once per process (a worker builds it before forking jobs)."""
    return _build_pytest_shim()


def _build_pytest_shim():
    """``raises``, ``approx``, ``skip``, ``fail``, ``fixture`` and ``mark`` (``skip``,
    ``skipif``, ``xfail`` mark a test skipped -- never a pass; ``parametrize`` runs the test
    once per parameter set, all of which must pass for the one test to pass)."""
    import math
    import re
    import types

    shim = types.ModuleType("pytest")

    class Skipped(BaseException):
        pass

    class Failed(AssertionError):
        pass

    class RaisesContext:
        def __init__(self, expected, match=None):
            self.expected, self.match, self.value, self.type = expected, match, None, None

        def __enter__(self):
            return self

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                raise Failed(f"DID NOT RAISE {self.expected}")
            if not issubclass(exc_type, self.expected):
                return False
            if self.match is not None and not re.search(self.match, str(exc)):
                raise AssertionError(f"{str(exc)!r} does not match {self.match!r}")
            self.value, self.type = exc, exc_type
            return True

    def raises(expected, *args, match=None, **kwargs):
        context = RaisesContext(expected, match)
        if not args:
            return context
        with context:
            args[0](*args[1:], **kwargs)
        return context

    class Approx:
        def __init__(self, expected, rel=None, abs=None):
            self.expected, self.rel, self.abs = expected, 1e-6 if rel is None else rel, 1e-12 if abs is None else abs

        def _close(self, actual, expected) -> bool:
            if isinstance(expected, (list, tuple)):
                return isinstance(actual, (list, tuple)) and len(actual) == len(expected) and all(
                    self._close(a, e) for a, e in zip(actual, expected))
            if isinstance(expected, dict):
                return isinstance(actual, dict) and actual.keys() == expected.keys() and all(
                    self._close(actual[k], v) for k, v in expected.items())
            try:
                return math.isclose(actual, expected, rel_tol=self.rel, abs_tol=self.abs)
            except TypeError:
                return actual == expected

        def __eq__(self, actual):
            return self._close(actual, self.expected)

        def __repr__(self):
            return f"approx({self.expected!r})"

    def skip(reason="", **_):
        raise Skipped(reason)

    def fail(reason="", **_):
        raise Failed(reason)

    def skipped(fn):
        fn.__unittest_skip__ = True
        return fn

    class Mark:
        def skip(self, fn=None, reason=""):
            return skipped(fn) if callable(fn) else skipped

        def skipif(self, condition, reason=""):
            return skipped if condition else (lambda fn: fn)

        def xfail(self, fn=None, **_):
            return skipped(fn) if callable(fn) else skipped

        def parametrize(self, names, values, **_):
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)

            def mark(fn):
                sets = [v if len(names) > 1 else (v,) for v in values]
                fn._amr_parametrize = getattr(fn, "_amr_parametrize", []) + [(names, sets)]
                return fn
            return mark

        def __getattr__(self, name):
            return lambda *a, **k: (a[0] if len(a) == 1 and callable(a[0]) and not k else (lambda fn: fn))

    def fixture(fn=None, **_):
        return fn if callable(fn) else (lambda f: f)

    shim.raises, shim.approx, shim.skip, shim.fail, shim.fixture = raises, Approx, skip, fail, fixture
    shim.mark, shim.Skipped, shim.Failed = Mark(), Skipped, Failed
    shim.skip.Exception = Skipped
    return shim


def _parameter_sets(fn) -> list[dict]:
    """Keyword sets for a ``parametrize``d test (the product of stacked marks); [{}] if none."""
    combos: list[dict] = [{}]
    for names, sets in getattr(fn, "_amr_parametrize", []):
        combos = [{**c, **dict(zip(names, values))} for c in combos for values in sets]
    return combos


# --------------------------------------------------------------------------------------------
# The child: runs user code. Everything it needs is bound before user code runs.
# --------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")[:DETAIL_CHARS]


def _set_child_limits(limits: dict) -> None:
    def cap(which: int, value: int) -> None:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            soft, hard = resource.getrlimit(which)
            if hard == resource.RLIM_INFINITY or value <= hard:
                resource.setrlimit(which, (value, hard))

    cpu = max(1, int(-(-float(limits["cpu_s"]) // 1)))
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_AS, int(limits["memory_bytes"]))
    cap(resource.RLIMIT_FSIZE, int(limits["file_size_bytes"]))
    cap(resource.RLIMIT_NPROC, int(limits["pids"]))
    cap(resource.RLIMIT_NOFILE, 256)
    for name in ("RLIMIT_MSGQUEUE", "RLIMIT_MEMLOCK"):  # POSIX queues would outlive the job
        if hasattr(resource, name):
            cap(getattr(resource, name), 0)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    except (ValueError, OSError):
        pass


def _prepare_job_process(workdir: str) -> None:
    """The job-independent set-up of a process that will run jobs' code.

    The zygote does it once and every job's child inherits it (so no job pays for it); a child
    the supervisor forks directly does it first thing. Nothing here survives into another job:
    each job runs in a fresh fork.
    """
    # ``_signal`` is the C module under ``signal``: the same calls without its enum wrapping.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD):
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.signal(signal.SIGINT, _signal.default_int_handler)
    _signal.signal(signal.SIGXFSZ, _signal.SIG_IGN)  # oversized writes raise EFBIG instead
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # a job reads nothing
    os.close(null)
    sys.argv = [PROGRAM_FILE]
    sys.path[:0] = [workdir]
    sys.modules["pytest"] = _pytest_shim()
    import types

    module = types.ModuleType(PROGRAM_MODULE)
    module.__file__ = os.path.join(workdir, PROGRAM_FILE)
    sys.modules[PROGRAM_MODULE] = module


# TestCase members the runner itself calls, watched for every job.
RUNNER_TESTCASE_NAMES = ("__init__", "setUpClass", "setUp", "tearDown", "doCleanups")


def watched_names(statements: list) -> tuple[str, ...]:
    """The names whose ``builtins``/``unittest.TestCase`` bindings a job's child checks after
    the program and after every test: every name the tests' code refers to (globals and
    attributes, nested functions and classes included), and what the runner calls itself.

    A program that rebinds one of them (``builtins.len``, ``TestCase.assertEqual``) is caught;
    rebinding a builtin the tests never name cannot change what they compute by name.
    """
    names = set(RUNNER_TESTCASE_NAMES)
    code_type = type(watched_names.__code__)
    stack = [code for code in statements if isinstance(code, code_type)]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(const for const in code.co_consts if isinstance(const, code_type))
    return tuple(sorted(names))


def compile_program(source: str):
    """The program's code object, or ``(error name, message)`` if it does not compile (the
    child then reports it as the program raising, as if it had compiled it itself)."""
    try:
        return compile(source, PROGRAM_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, SystemError) as exc:
        return (type(exc).__name__, str(exc))


def _raise_compile_error(error: tuple) -> None:
    name, message = error
    raise SyntaxError(message if name == "SyntaxError" else f"{name}: {message}")


def _child_main(statements, steps, program, watch, token, result_w, out_w, err_w, limits) -> None:
    """Run program + tests in this (forked, ``_prepare_job_process``ed) process and report per
    test; never returns. ``program`` and ``statements`` were compiled by the supervisor."""
    # Everything the runner calls after user code starts is bound here, before it starts: a
    # program that rebinds ``os.write``, ``builtins.compile``, ``ast.Module``... changes nothing.
    write, _exit, fsdecode = os.write, os._exit, os.fsdecode
    exec_, code_type, raise_compile_error = exec, type(_child_main.__code__), _raise_compile_error
    isinstance_, callable_, getattr_, hasattr_, issubclass_ = isinstance, callable, getattr, hasattr, issubclass
    base_exception, memory_error = BaseException, MemoryError
    prefix = token.encode() + b" "

    def send(kind: str, index: int, detail: str = "") -> None:
        write(RESULT_FD, prefix + f"{kind} {index} {_one_line(detail)}\n".encode("utf-8", "replace"))

    try:
        os.setsid()  # fd 0 is /dev/null already (``_prepare_job_process``)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(result_w, RESULT_FD, inheritable=False)  # exec'd programs never get it
        os.closerange(RESULT_FD + 1, 1 << 16)
        # sys.stdin/stdout/stderr wrap fds 0-2, now the job's; ``_prepare_std_streams`` set them up
        _set_child_limits(limits)
    except base_exception as exc:  # the runner itself failed: not the program's fault
        send("X", -1, f"child setup: {exc!r}")
        _exit(70)

    tampered: list[str] = []

    def tamper(what: str) -> None:
        if not tampered:
            send("T", -1, what)
        tampered.append(what)

    def audit(event: str, args: tuple) -> None:
        if event in ("sys.settrace", "sys.setprofile", "sys._current_frames", "gc.get_objects",
                     "gc.get_referrers", "gc.get_referents") or event.startswith("ctypes."):
            tamper(event)
            raise PermissionError(f"blocked by the test harness: {event}")
        if event in ("open", "os.listdir", "os.scandir") and args and isinstance_(args[0], (str, bytes)):
            path = fsdecode(args[0])
            parts = path.split("/")
            if path.startswith("/dev/fd") or (
                len(parts) > 3 and parts[1] == "proc" and parts[3] in ("mem", "fd", "environ", "maps", "pagemap")
            ):
                tamper(f"{event} {path}")
                raise PermissionError(f"blocked by the test harness: {path}")

    watched = (("builtins", builtins.__dict__), ("TestCase", unittest.TestCase.__dict__))
    test_case, skip_test = unittest.TestCase, unittest.SkipTest
    tuple_, is_, absent = tuple, operator.is_, object()

    def snapshot() -> tuple:
        # By identity (``==`` could run a patched ``__eq__``); only the watched names: touching
        # every builtin would copy-on-write fault ~90 pages per job (see ``watched_names``).
        return tuple_(tuple_([d.get(name, absent) for name in watch]) for _, d in watched)

    def check_untouched(before: tuple) -> None:
        after = snapshot()
        if all(map(is_, before[0], after[0])) and all(map(is_, before[1], after[1])):
            return
        changed = [  # a name added since is no patch; a replaced or deleted one is
            f"{where}.{name}"
            for (where, _), old, new in zip(watched, before, after)
            for name, was, now in zip(watch, old, new)
            if was is not absent and was is not now
        ]
        if changed:
            tamper("patched " + ", ".join(sorted(changed)[:5]))

    def is_skip(exc: BaseException) -> bool:
        return isinstance_(exc, skip_test) or any(c.__name__ in SKIP_EXCEPTION_NAMES for c in type(exc).__mro__)

    def describe(exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except base_exception:
                pass

    parameter_sets_of = _parameter_sets
    namespace = sys.modules[PROGRAM_MODULE].__dict__
    pristine = snapshot()
    sys.addaudithook(audit)

    def run_code(code) -> None:
        if not isinstance_(code, code_type):  # the supervisor could not compile it
            raise_compile_error(code)
        exec_(code, namespace)

    def call(fn, **kwargs) -> None:
        result = fn(**kwargs)
        if hasattr_(result, "__await__"):
            import asyncio

            asyncio.run(result)

    def needs_arguments(fn, given: dict) -> bool:
        import inspect

        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return False
        return any(p.default is p.empty and p.name not in given
                   and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)

    classes_set_up: dict[str, BaseException | None] = {}

    def run_function(name: str) -> None:
        fn = namespace.get(name)
        if not callable_(fn):
            raise NameError(f"test function {name} is not defined")
        if getattr_(fn, "__unittest_skip__", False):
            raise skip_test(getattr_(fn, "__unittest_skip_why__", "skipped"))
        parameter_sets = parameter_sets_of(fn)
        if needs_arguments(fn, parameter_sets[0]):
            raise TypeError(f"{name} needs fixtures (arguments), which this runner does not provide")
        for kwargs in parameter_sets:
            call(fn, **kwargs)

    def run_method(class_name: str, name: str) -> None:
        cls = namespace.get(class_name)
        if not isinstance_(cls, type):
            raise NameError(f"test class {class_name} is not defined")
        method = getattr_(cls, name, None)
        if method is None:
            raise AttributeError(f"{class_name}.{name} is not defined")
        if getattr_(cls, "__unittest_skip__", False) or getattr_(method, "__unittest_skip__", False):
            raise skip_test("skipped")
        if issubclass_(cls, test_case):
            if class_name not in classes_set_up:
                try:
                    cls.setUpClass()
                    classes_set_up[class_name] = None
                except base_exception as exc:
                    classes_set_up[class_name] = exc
            if classes_set_up[class_name] is not None:
                raise classes_set_up[class_name]
            case = cls(name)
            case.setUp()
            try:
                call(getattr_(case, name))
            finally:
                case.tearDown()
                case.doCleanups()
        else:
            instance = cls()
            if hasattr_(instance, "setup_method"):
                instance.setup_method(method)
            try:
                bound = getattr_(instance, name)
                parameter_sets = parameter_sets_of(bound)
                if needs_arguments(bound, parameter_sets[0]):
                    raise TypeError(f"{class_name}.{name} needs fixtures (arguments)")
                for kwargs in parameter_sets:
                    call(bound, **kwargs)
            finally:
                if hasattr_(instance, "teardown_method"):
                    instance.teardown_method(method)

    try:
        run_code(program)
    except base_exception as exc:
        flush()
        send("M" if isinstance_(exc, memory_error) else "E", -1, "program raised " + describe(exc))
        _exit(0)
    check_untouched(pristine)

    for index, (kind, target, label) in enumerate(steps):
        if kind == "setup":
            try:
                run_code(statements[target])
            except base_exception as exc:
                flush()
                send("M" if isinstance_(exc, memory_error) else "E", index, f"tests setup ({label}) raised {describe(exc)}")
                _exit(0)
            continue
        send("B", index, label)
        try:
            if kind == "test":
                run_code(statements[target])
            elif kind == "function":
                run_function(target)
            else:
                run_method(*target)
        except base_exception as exc:
            if isinstance_(exc, memory_error):
                send("M", index, describe(exc))
            elif is_skip(exc):
                send("S", index, describe(exc))
            else:
                send("F", index, f"{label}: {describe(exc)}")
        else:
            send("P", index, "")
        check_untouched(pristine)
    flush()
    send("D", len(steps), "")
    _exit(0)


# --------------------------------------------------------------------------------------------
# The supervisor: forks the child, watches it, counts, decides.
# --------------------------------------------------------------------------------------------


class _Tally:
    """The supervisor's count, fed only by well-formed, token-tagged lines in plan order."""

    def __init__(self, steps: list[tuple], token: str):
        self.steps = steps
        self.token = token.encode()
        self.test_indexes = [i for i, s in enumerate(steps) if s[0] != "setup"]
        self.outcomes: dict[int, str] = {}
        self.open_test: int | None = None
        self.last_index = -1
        self.done = False
        self.oom = False
        self.error = ""
        self.tamper = ""
        self.runner_error = ""
        self.first_failure = ""

    def violation(self, what: str) -> None:
        if not self.tamper:
            self.tamper = f"protocol violation: {what}"

    def feed(self, line: bytes) -> None:
        token, _, rest = line.partition(b" ")
        if token != self.token:
            self.violation("line without the job token")
            return
        kind, _, rest = rest.decode("utf-8", "replace").partition(" ")
        index_text, _, detail = rest.partition(" ")
        try:
            index = int(index_text)
        except ValueError:
            self.violation("malformed line")
            return
        if self.done:
            self.violation("line after done")
        elif kind == "B":
            if self.open_test is not None or index <= self.last_index or index not in self.test_indexes:
                self.violation(f"unexpected begin of step {index}")
            else:
                self.open_test, self.last_index = index, index
        elif kind in "PFSM" and len(kind) == 1 and self.open_test is not None:
            if index != self.open_test:
                self.violation(f"outcome for step {index} while step {self.open_test} runs")
                return
            self.outcomes[index] = kind
            self.open_test = None
            if kind == "M":
                self.oom = True
            if kind != "P" and not self.first_failure:
                self.first_failure = {"F": "", "S": "skipped: ", "M": "out of memory: "}[kind] + detail
        elif kind in ("E", "M") and self.open_test is None:
            self.error = self.error or detail
            self.oom = self.oom or kind == "M"
        elif kind == "T":
            self.tamper = self.tamper or f"tampering: {detail}"
        elif kind == "X":
            self.runner_error = detail
        elif kind == "D" and self.open_test is None and index == len(self.steps):
            self.done = True
        else:
            self.violation(f"unexpected {kind!r} line")

    @property
    def tests_run(self) -> int:
        return len(self.outcomes) + (1 if self.open_test is not None else 0)

    @property
    def tests_passed(self) -> int:
        return sum(1 for v in self.outcomes.values() if v == "P")


class _Capture:
    """One captured stream, capped; counts every byte the child wrote."""

    def __init__(self, cap: int):
        self.cap = cap
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    def text(self) -> str:
        return bytes(self.data).decode("utf-8", "replace")


class _DirectChild:
    """The job's child, forked by the supervisor itself (one-shot mode, or not an init)."""

    def __init__(self, run) -> None:
        """Fork; the child calls ``run()`` (which never returns) and exits 71 if it does."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                run()
            finally:
                os._exit(71)
        self.exit_fd = os.pidfd_open(self.pid)  # readable once the child has exited
        self.fork_server_killed = False

    def finish(self) -> tuple[int | None, float, int]:
        """Kill the child and all it started, reap them: (wait status, CPU seconds, leftovers)."""
        try:
            wpid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            wpid, status, usage = self.pid, None, None
        if wpid == 0:
            os.kill(self.pid, signal.SIGKILL)
            _, status, usage = os.wait4(self.pid, 0)
        os.close(self.exit_fd)
        cpu = (usage.ru_utime + usage.ru_stime) if usage is not None else 0.0
        return status, cpu, _kill_descendants(self.pid)


def _kill_descendants(child_pid: int) -> int:
    """Kill every process the job started; reap them. How many there were (besides the child)."""
    if os.getpid() == 1:  # init of our own pid namespace: kill(-1) spares only us
        return _kill_all(spare=(child_pid,))
    for target in (lambda: os.killpg(child_pid, signal.SIGKILL), lambda: os.kill(child_pid, signal.SIGKILL)):
        try:  # not an init: the child's session/process group is the best we can do
            target()
        except (ProcessLookupError, PermissionError):
            pass
    return 0


def _kill_all(spare: tuple[int, ...]) -> int:
    """As pid 1: SIGKILL every other process of the namespace and reap them all; how many of the
    reaped were not in ``spare`` (the job's own child, the fork server: no leftovers)."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    others = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            return others
        others += pid not in spare


class _Zygote:
    """A warm fork server: it forks every job's child, so the supervisor itself never forks.

    Why: a fork write-protects every page of the forking process, and the supervisor's own
    per-job work (parsing, counting, reporting) then copy-on-write faults all over its heap
    (measured here: ~0.8 ms of CPU per job, about a HumanEval program's worth). The zygote
    only waits between forks, so it touches few pages. It is a child of the supervisor (pid 1),
    same uid: a job can kill it (the job then fails, see ``supervise``), never the supervisor,
    and kill(-1) after a job that left processes behind takes it too; the next job starts a new
    one. Protocol over a SOCK_SEQPACKET pair: job descriptors in (SCM_RIGHTS); the child's pid,
    then its wait status and CPU time out.
    """

    def __init__(self, workdir: str):
        if os.getpid() != 1:  # its cleanup is kill(-1): only an init of its own namespace may do that
            raise RuntimeError("the fork server needs the supervisor to be pid 1 of its own pid namespace")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        _release_free_memory()  # every page the zygote holds is copied (in page tables) per job
        self.pid = os.fork()
        if self.pid == 0:
            try:
                mine.close()
                _zygote_loop(theirs, workdir)
            finally:
                os._exit(0)
        theirs.close()
        self.channel = mine
        self.alive = True

    def spawn(self, job_fd: int, result_w: int, out_w: int, err_w: int) -> "_ZygoteChild | None":
        """A child running the job in ``job_fd``; None if the zygote is gone."""
        try:
            socket.send_fds(self.channel, [b"J"], [job_fd, result_w, out_w, err_w])
            reply = self.channel.recv(64)
        except OSError:
            reply = b""
        if len(reply) != 8:
            self.close()
            return None
        return _ZygoteChild(self, int.from_bytes(reply, "big"))

    def close(self) -> None:
        if self.alive:
            self.alive = False
            self.channel.close()


class _ZygoteChild:
    """A job's child forked by the zygote; the supervisor watches the zygote's channel."""

    def __init__(self, zygote: _Zygote, pid: int):
        self.zygote, self.pid = zygote, pid
        self.exit_fd = zygote.channel.fileno()  # the wait status arrives here (or EOF)
        self.fork_server_killed = False

    def finish(self) -> tuple[int | None, float, int]:
        """Reap the child (through the zygote), kill leftovers: (wait status, CPU s, leftovers)."""
        status, cpu = None, 0.0
        ready = select.select([self.exit_fd], [], [], 0)[0]
        message = self.zygote.channel.recv(64) if ready else None
        if message and len(message) == 16:
            status, cpu = int.from_bytes(message[:8], "big", signed=True), struct.unpack("d", message[8:])[0]
        elif message is not None:  # EOF: the zygote died before the child was done -- killed by the job
            self.fork_server_killed = True
        if status is None:  # still running (timeout, output flood, host gone) or zygote dead
            return status, cpu, self._kill_all()
        leftovers = 0
        while True:  # job processes that exited after the child did were reparented to us
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.zygote.pid:
                self.fork_server_killed = True
            else:
                leftovers += 1
        others = [name for name in os.listdir("/proc") if name.isdigit() and int(name) not in (1, self.zygote.pid)]
        if others or not self.zygote.alive or self.fork_server_killed:
            leftovers += self._kill_all()
        return status, cpu, leftovers

    def _kill_all(self) -> int:
        self.zygote.close()
        return _kill_all(spare=(self.pid, self.zygote.pid))


def _zygote_loop(channel, workdir: str) -> None:
    """The zygote's whole life: fork a child per job, report its pid and how it ended."""
    _prefer_as_oom_victim()  # inherited by every job's child
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # let go of the host's pipe (``_prepare_job_process`` does stdin)
    os.close(null)
    _prepare_job_process(workdir)
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(channel, 16, 4)
        except OSError:
            return
        if len(fds) != 4:  # EOF: the supervisor is gone
            return
        job_fd, result_w, out_w, err_w = fds
        # Unpacked here, not in the child: a page first written here is cheap to reuse, while
        # every page a child writes first is copied (the child only has to use these objects).
        statements, steps, program, watch, token, limits, job_dir = marshal.loads(os.pread(job_fd, os.fstat(job_fd).st_size, 0))
        os.close(job_fd)
        os.chdir(job_dir)
        pid = os.fork()
        if pid == 0:
            try:  # the channel and every other descriptor are closed before user code runs
                _child_main(statements, steps, program, watch, token, result_w, out_w, err_w, limits)
            finally:
                os._exit(71)
        del statements, steps, program, watch, token
        for fd in (result_w, out_w, err_w):
            os.close(fd)
        channel.send(pid.to_bytes(8, "big"))
        _, status, usage = os.wait4(pid, 0)
        channel.send(status.to_bytes(8, "big", signed=True) + struct.pack("d", usage.ru_utime + usage.ru_stime))


def _prefer_as_oom_victim() -> None:
    """oom_score_adj 1000: where a memory cgroup caps the worker, its OOM killer takes job
    processes before the supervisor. An undumpable process cannot open its own /proc files,
    so this briefly becomes dumpable; no job process exists yet when it runs."""
    _prctl(4, 1)
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, b"1000")
        finally:
            os.close(fd)
    except OSError:
        pass
    finally:
        _prctl(4, 0)


def supervise(program_source: str, tests_source: str, limits: dict, extra_fds: tuple[int, ...] = (),
              zygote: _Zygote | None = None) -> dict:
    """Run one job in the current directory; the verdict and capped output as a dict.

    ``extra_fds`` are descriptors to watch for hang-up (the host's request pipe in server mode):
    if the host goes away the job is killed at once. ``zygote`` (server mode, as pid 1) forks
    the job's child; without one the supervisor forks it itself.
    """
    started = time.monotonic()
    try:
        stmts, steps = plan_tests(tests_source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return _report("failed", f"tests do not parse: {type(exc).__name__}: {exc}"[:DETAIL_CHARS], 0, 0, 0, None, None, b"", b"", started)
    if not any(kind != "setup" for kind, _, _ in steps):
        return _report("failed", "no tests ran: the tests contain no test", 0, 0, 0, None, None, b"", b"", started)
    statements = compile_statements(stmts)
    program = compile_program(program_source)
    watch = watched_names(statements)

    token = os.urandom(16).hex()
    result_r, result_w = os.pipe()
    try:
        fcntl.fcntl(result_w, fcntl.F_SETPIPE_SZ, MAX_RESULT_BYTES)
    except OSError:
        pass  # over this user's pipe quota: the default size, read every RESULT_POLL_S
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if zygote is None:
        def run_child() -> None:
            _prepare_job_process(os.getcwd())
            _child_main(statements, steps, program, watch, token, result_w, out_w, err_w, limits)

        child = _DirectChild(run_child)
    else:
        job_fd = os.memfd_create("amr-job", os.MFD_CLOEXEC)
        _write_all(job_fd, marshal.dumps((statements, steps, program, watch, token, limits, os.getcwd())))
        child = zygote.spawn(job_fd, result_w, out_w, err_w)
        os.close(job_fd)
    for fd in (result_w, out_w, err_w):
        os.close(fd)
    if child is None:
        for fd in (result_r, out_r, err_r):
            os.close(fd)
        return _report("infra_error", "the sandbox's fork server is gone", 0, 0, 0, None, None, b"", b"", started, ["fork server gone"])

    cap = int(limits["output_bytes"])
    out, err = _Capture(cap), _Capture(cap)
    tally = _Tally(steps, token)
    pending = bytearray()
    result_bytes = 0
    deadline = started + float(limits["wall_s"])
    timed_out = over_output = host_gone = False
    exit_code = term_signal = None
    # The result pipe is read whenever something else wakes us and at least every
    # RESULT_POLL_S, not on each line (a wake-up per test line costs more than the test);
    # it holds MAX_RESULT_BYTES, so a child never blocks on it before we look.
    os.set_blocking(result_r, False)
    poller = select.poll()
    for fd in (out_r, err_r, child.exit_fd):
        poller.register(fd, select.POLLIN)
    for fd in extra_fds:
        poller.register(fd, 0)  # hang-up only
    open_fds = {result_r, out_r, err_r}
    child_exited = False

    def drain(fd: int) -> bool | None:
        """Read once: True if more may follow, False at EOF or flood, None if nothing yet."""
        nonlocal result_bytes
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return None
        if not chunk:
            if fd == result_r:
                open_fds.discard(fd)
            return False
        if fd == result_r:
            result_bytes += len(chunk)
            if result_bytes > MAX_RESULT_BYTES:
                tally.violation("result flood")
                open_fds.discard(fd)
                return False
            pending.extend(chunk)
            while b"\n" in pending:
                line, _, rest = bytes(pending).partition(b"\n")
                pending[:] = rest
                tally.feed(line)
        else:
            (out if fd == out_r else err).add(chunk)
        return True

    while not child_exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for fd, events in poller.poll(min(remaining, RESULT_POLL_S) * 1000):
            if fd in extra_fds:
                host_gone = True
            elif fd == child.exit_fd:
                child_exited = True
            elif fd in open_fds and not drain(fd):
                poller.unregister(fd)
                open_fds.discard(fd)
        while result_r in open_fds and drain(result_r) is not None:
            pass
        if host_gone or out.total + err.total > cap or tally.tamper.startswith("protocol violation: result flood"):
            over_output = not host_gone and out.total + err.total > cap
            break
    status, cpu_used, leftovers = child.finish()
    if status is not None and os.WIFEXITED(status):
        exit_code = os.WEXITSTATUS(status)
    elif status is not None and os.WIFSIGNALED(status):
        term_signal = os.WTERMSIG(status)
    # What the child wrote before it died is still in the pipes; every writer is dead now
    # (as init) or the reads stop at the cap, so this ends.
    for fd in list(open_fds):
        os.set_blocking(fd, False)
        while fd in open_fds and out.total + err.total <= 2 * cap and drain(fd):
            pass
    for fd in (result_r, out_r, err_r):
        os.close(fd)
    over_output = over_output or (not timed_out and out.total + err.total > cap)

    anomalies = []
    if leftovers:
        anomalies.append(f"{leftovers} leftover processes killed")
    if child.fork_server_killed:
        anomalies.append("fork server killed")
    if host_gone:
        return _report("infra_error", "host went away", tally.tests_run, tally.tests_passed, len(tally.test_indexes), exit_code, term_signal, out.data, err.data, started, anomalies + ["host gone"])

    planned = len(tally.test_indexes)
    if timed_out:
        status, detail = "timeout", f"wall time limit of {limits['wall_s']}s exceeded"
        anomalies.append("timeout")
    elif term_signal == signal.SIGXCPU or (term_signal == signal.SIGKILL and cpu_used >= 0.95 * float(limits["cpu_s"])):
        status, detail = "timeout", f"CPU time limit of {limits['cpu_s']}s exceeded"
        anomalies.append("timeout")
    elif tally.oom:
        status, detail = "oom", f"memory limit of {limits['memory_bytes']} bytes exceeded: " + (tally.first_failure or tally.error)
        anomalies.append("oom")
    elif over_output:
        status, detail = "output_limit", f"output exceeded {cap} bytes"
        anomalies.append("output_limit")
    elif tally.runner_error:
        status, detail = "infra_error", f"runner: {tally.runner_error}"
        anomalies.append("runner error")
    elif child.fork_server_killed:
        status, detail = "failed", "the program killed the sandbox's fork server (its parent process)"
    elif tally.tamper:
        status, detail = "failed", tally.tamper
        anomalies.append("tampering")
    elif tally.error:
        status, detail = "failed", tally.error
    elif not tally.done:
        how = f"exit code {exit_code}" if exit_code is not None else f"signal {term_signal}"
        where = f" during test {tally.open_test}" if tally.open_test is not None else ""
        status, detail = "failed", f"exited before the tests finished{where} ({how})"
    elif tally.tests_run == 0:
        status, detail = "failed", "no tests ran"
    elif tally.tests_passed == planned == tally.tests_run and exit_code == 0:
        status, detail = "passed", f"{tally.tests_passed}/{planned} tests passed"
    else:
        status = "failed"
        detail = f"{tally.tests_passed}/{planned} tests passed; {tally.first_failure}"[:DETAIL_CHARS]
    return _report(status, detail, tally.tests_run, tally.tests_passed, planned, exit_code, term_signal, out.data, err.data, started, anomalies)


def _report(status, detail, run, passed, planned, exit_code, term_signal, out, err, started, anomalies=()) -> dict:
    return {
        "status": status,
        "detail": detail,
        "tests_run": run,
        "tests_passed": passed,
        "tests_planned": planned,
        "exit_code": exit_code,
        "signal": term_signal,
        "stdout": bytes(out).decode("utf-8", "replace"),
        "stderr": bytes(err).decode("utf-8", "replace"),
        "duration_s": round(time.monotonic() - started, 6),
        "anomalies": list(anomalies),
    }


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def _read_exact(fd: int, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = os.read(fd, size - len(buf))
        if not chunk:
            raise EOFError("request channel closed")
        buf += chunk
    return bytes(buf)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _writev_all(fd: int, parts: list) -> None:
    """``parts`` in order, in one system call when the pipe takes them all (no joined copy)."""
    written = os.writev(fd, parts)
    for part in parts:
        if written >= len(part):
            written -= len(part)
            continue
        _write_all(fd, memoryview(part)[written:])
        written = 0


def _decode_files(files: dict) -> dict[str, bytes]:
    import base64

    out = {}
    for name, content in files.items():
        out[name] = base64.b64decode(content["b64"]) if isinstance(content, dict) else content.encode("utf-8")
    return out


def _write_files(workdir: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"bad file name {name!r}")
        path = os.path.join(workdir, name)
        if "/" in name:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)


def _job_from_files(files: dict[str, bytes]) -> tuple[str, str, dict]:
    manifest = json.loads(files[MANIFEST_FILE])
    program = files[manifest.get("program", PROGRAM_FILE)].decode("utf-8", "replace")
    tests = files[manifest.get("tests", TESTS_FILE)].decode("utf-8", "replace")
    return program, tests, manifest["limits"]


def _prepare_std_streams() -> None:
    """Set up the runner's own sys.stdout/stderr the way a job's child uses them once it has
    pointed fds 1 and 2 at its capture pipes (so the child needs no new stream objects):
    UTF-8 that never fails on a lone surrogate, stderr line-buffered. Nothing was written yet."""
    sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace", line_buffering=True)


def main_one_shot() -> int:
    """Run the job in the current directory; print one ``AMR-REPORT`` line (nonce from stdin)."""
    files = {}
    for name in (MANIFEST_FILE, PROGRAM_FILE, TESTS_FILE):
        with open(name, "rb") as f:
            files[name] = f.read()
    program, tests, limits = _job_from_files(files)
    _become_undumpable()
    _prepare_std_streams()
    report = supervise(program, tests, limits)
    report["nonce"] = sys.stdin.readline().strip()  # read only now: every user process is dead
    # Keep the report line within half the output cap, so a backend capping this process's
    # output at the job's cap never truncates the report itself.
    budget = max(4096, int(limits["output_bytes"]) // 2)
    line = json.dumps(report)
    while len(line) > budget and (report["stdout"] or report["stderr"]):
        for key in ("stdout", "stderr"):
            report[key] = report[key][: len(report[key]) // 2]
        line = json.dumps(report)
    sys.stdout.write(f"\n{REPORT_PREFIX} {line}\n")
    sys.stdout.flush()
    return 0


def _become_undumpable() -> None:
    """Deny same-uid processes /proc/<our pid>/{mem,fd,environ} and ptrace (PR_SET_DUMPABLE=0)."""
    _prctl(4, 0)


@functools.lru_cache(maxsize=1)
def _libc():
    """This process's C library through ctypes, or None where it cannot be loaded."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (OSError, ImportError):
        return None


def _release_free_memory() -> None:
    """glibc's malloc_trim(0): hand freed heap pages back (imports leave megabytes of them)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _prctl(option: int, argument) -> None:
    prctl = getattr(_libc(), "prctl", None)
    if prctl is not None:
        prctl(option, argument, 0, 0, 0)


def _sysv_ipc_in_use() -> bool:
    """Any System V shared memory, semaphore or queue in the namespace (a header line each, else)."""
    for path in ("/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if os.read(fd, 65536).count(b"\n") > 1:
                return True
        finally:
            os.close(fd)
    return False


def _empty_dir(path: str) -> bool:
    """Remove everything inside ``path`` without following links; False if anything stayed.

    Runs when every process of the job is dead, so nothing changes underneath it.
    """
    try:
        with os.scandir(path) as entries:
            found = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except OSError:
        return False
    for target, is_dir in found:
        if is_dir:
            _remove_tree(target)
        else:
            try:
                os.unlink(target)
            except OSError:
                pass
    try:
        return not os.listdir(path)
    except OSError:
        return False


def _remove_tree(path: str) -> None:
    """``rm -r`` that never follows links; a folder of plain files (a job's) goes the short way."""
    try:
        with os.scandir(path) as entries:
            found = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
        if not any(is_dir for _, is_dir in found):
            for target, _ in found:
                os.unlink(target)
            os.rmdir(path)
            return
    except OSError:
        pass  # unreadable or undeletable entries: the careful way below
    import shutil

    def retry(func, target, _exc) -> None:
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700, follow_symlinks=False)
        except OSError:
            pass
        try:
            func(target)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)


def main_serve(scratch_dirs: list[str]) -> int:
    """Worker loop: job frame in, (children die), nonce frame in, report frame out. Forever."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGPIPE else signal.SIG_DFL)
    _become_undumpable()
    _prepare_std_streams()
    for name in WARM_MODULES:
        try:
            __import__(name)
        except ImportError:
            pass
    _pytest_shim()
    # Everything alive now lives as long as the worker: take it out of the collector's view, so
    # a job's collections never walk (and copy-on-write fault) the warm heap it inherits.
    gc.collect()
    gc.freeze()

    workdir = os.path.join(scratch_dirs[0], "job")
    nonce = bytearray(256)
    zygote = None
    while True:
        try:
            size = int.from_bytes(_read_exact(0, FRAME_HEADER), "big")
            request = json.loads(_read_exact(0, size))
        except EOFError:
            return 0
        try:
            files = _decode_files(request["files"])
            program, tests, limits = _job_from_files(files)
            os.mkdir(workdir, 0o755)
            _write_files(workdir, {k: v for k, v in files.items() if not k.startswith("_amr_")})
            os.chdir(workdir)
            if os.getpid() == 1 and (zygote is None or not zygote.alive):
                zygote = _Zygote(workdir)  # only an init can clean up after a zygote's children
            report = supervise(program, tests, limits, extra_fds=(0,), zygote=zygote)
        except Exception as exc:  # a broken request, not a program: the host retries elsewhere
            report = _report("infra_error", f"worker: {type(exc).__name__}: {exc}"[:DETAIL_CHARS], 0, 0, 0, None, None, b"", b"", time.monotonic(), ["worker error"])
        os.chdir("/")
        clean = all(_empty_dir(d) for d in scratch_dirs)
        if not clean:
            report["anomalies"].append("scratch not empty after cleanup")
        if _sysv_ipc_in_use():
            report["anomalies"].append("System V IPC objects left")
        report["job_id"] = request.get("job_id", "")
        if "host gone" in report["anomalies"]:
            return 0
        try:
            nonce_size = int.from_bytes(_read_exact(0, FRAME_HEADER), "big")
            if nonce_size > len(nonce):
                raise EOFError("nonce too long")
            got = os.readv(0, [memoryview(nonce)[:nonce_size]])
            if got != nonce_size:
                raise EOFError("short nonce")
        except EOFError:
            return 0
        body = json.dumps(report).encode()
        header = (nonce_size + 1 + len(body)).to_bytes(FRAME_HEADER, "big")
        _writev_all(1, [header, memoryview(nonce)[:nonce_size], b"\n", body])
        nonce[:] = bytes(len(nonce))


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--serve":
        scratch = [argv[i + 1] for i, a in enumerate(argv) if a == "--scratch" and i + 1 < len(argv)]
        return main_serve(scratch or ["/tmp"])
    return main_one_shot()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
