"""The harness-owned test runner that runs INSIDE a sandbox (stdlib only, any Python >= 3.9).

Written as this package, shipped as ONE script: ``amr_dagster.sandbox.packing`` concatenates its
modules (and ``Status`` from ``sandbox/base.py``) into the text every backend runs, so nothing
here may import beyond the standard library and each other. The modules, in the order a job
meets them: ``wire`` (job files in, report frames out), ``plan`` (what counts as a test; the
supervisor's compiling), ``supervisor`` (watches the job's child, counts, decides),
``fork_server`` (forks every job's child in server mode), ``child`` (runs the program and its
tests, the tamper guard), ``pytest_shim`` (the ``pytest`` stand-in), ``cleanup`` (kill, reap,
empty scratch), ``libc`` (prctl, malloc_trim), ``main`` (the one-shot and server entry points).

Every backend runs the packed script with the sandbox's own ``python3``; it never runs on the host with
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

* Trusted: the *supervisor* (this package's code in the process that never executes user code).
  It parses and compiles the tests and the program (compiling never runs code), has one fresh
  *child* forked per job that runs them, and alone decides the verdict from what it observes.
* The child closes every descriptor it inherited except a result pipe and fresh stdout/stderr
  capture pipes *before* user code runs, so user code can reach neither the supervisor's report
  channel nor its request channel. In server mode the supervisor is pid 1 of the sandbox's pid
  namespace: user code cannot kill or stop it (SIGKILL/SIGSTOP from inside are ignored for an
  init), and it is non-dumpable (no ``/proc/1/mem``, ``/proc/1/fd``, ``/proc/1/environ`` access
  for a same-uid process without capabilities). There the children are forked by a *fork server*
  (``ForkServer``, the supervisor's own child, which never runs user code; it exists so that the
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
