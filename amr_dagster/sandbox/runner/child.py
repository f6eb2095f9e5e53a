"""The job's child: runs the program and its tests, reports per test, guards against tampering.

Everything it needs is bound before user code runs."""

from __future__ import annotations

import _signal
import builtins
import operator
import os
import resource
import signal
import sys
import unittest

from .pytest_shim import parameter_sets, pytest_stand_in
from .wire import DETAIL_CHARS, PROGRAM_FILE


PROGRAM_MODULE = "solution"
RESULT_FD = 3
SKIP_EXCEPTION_NAMES = frozenset({"SkipTest", "Skipped", "SkipException"})


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


def prepare_job_process(workdir: str) -> None:
    """The job-independent set-up of a process that will run jobs' code.

    The fork server does it once and every job's child inherits it (so no job pays for it); a child
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
    sys.modules["pytest"] = pytest_stand_in()
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


def _raise_compile_error(error: tuple) -> None:
    name, message = error
    raise SyntaxError(message if name == "SyntaxError" else f"{name}: {message}")


def child_main(statements, steps, program, watch, token, result_w, out_w, err_w, limits) -> None:
    """Run program + tests in this (forked, ``prepare_job_process``ed) process and report per
    test; never returns. ``program`` and ``statements`` were compiled by the supervisor."""
    # Everything the runner calls after user code starts is bound here, before it starts: a
    # program that rebinds ``os.write``, ``builtins.compile``, ``ast.Module``... changes nothing.
    write, _exit, fsdecode = os.write, os._exit, os.fsdecode
    exec_, code_type, raise_compile_error = exec, type(child_main.__code__), _raise_compile_error
    isinstance_, callable_, getattr_, hasattr_, issubclass_ = isinstance, callable, getattr, hasattr, issubclass
    base_exception, memory_error = BaseException, MemoryError
    prefix = token.encode() + b" "

    def send(kind: str, index: int, detail: str = "") -> None:
        write(RESULT_FD, prefix + f"{kind} {index} {_one_line(detail)}\n".encode("utf-8", "replace"))

    try:
        os.setsid()  # fd 0 is /dev/null already (``prepare_job_process``)
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

    parameter_sets_of = parameter_sets
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
