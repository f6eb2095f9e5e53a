"""A minimal ``pytest`` for the tests (the sandbox's python has none): the parts tests use."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def pytest_stand_in():
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


def parameter_sets(fn) -> list[dict]:
    """Keyword sets for a ``parametrize``d test (the product of stacked marks); [{}] if none."""
    combos: list[dict] = [{}]
    for names, sets in getattr(fn, "_amr_parametrize", []):
        combos = [{**c, **dict(zip(names, values))} for c in combos for values in sets]
    return combos
