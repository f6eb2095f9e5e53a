"""The deployment's pools: which scarce thing each stage holds while it runs, and how many may.

A Dagster pool limits how many steps that name it run at once across every run of an instance
(``dagster instance concurrency set POOL LIMIT``; ``amr-dagster pools`` sets them all from the
settings below). Two pools guard ordered shared state and are always 1: ``minhash_dedup`` (global
near-dedup: batch N is compared with every batch committed before it) and ``module_library``
(its snapshots form one order). The others are sized by setting, because they are capacity:

- ``sandbox``: steps executing generated code; each opens a worker pool sized to its machine, so
  the limit is the number of machines (or sandbox hosts) able to run one.
- ``llm_generator`` / ``llm_teacher``: steps calling that role; the limit is how many whole-stage
  batches the role's servers take at once before requests only queue behind each other.

A Dagster step takes one pool. A stage that needs two (``evolved_responses``: the teacher and the
sandbox; ``humaneval_eval``: the generator and the sandbox) takes the LLM role's: its wall time is
the model's (one generation per row against a few milliseconds of sandbox per program), and LLM
servers (GPUs) are the scarce, expensive capacity while sandbox workers scale with CPUs.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

MINHASH_DEDUP = "minhash_dedup"
MODULE_LIBRARY = "module_library"
SANDBOX = "sandbox"
LLM_GENERATOR = "llm_generator"
LLM_TEACHER = "llm_teacher"

FIXED = {MINHASH_DEDUP: 1, MODULE_LIBRARY: 1}  # ordered shared state: never more than one writer
SIZED = {SANDBOX: 2, LLM_GENERATOR: 4, LLM_TEACHER: 4}  # defaults; AMR_POOL_<NAME> overrides
POOLS = (*FIXED, *SIZED)


def stage_pool(services: Iterable[str]) -> str | None:
    """The one pool of a stage that takes ``services`` (its core function's arguments): the
    library's for the stage that grows it, else the LLM role's if it calls one (teacher first:
    it is the larger model), else the sandbox's."""
    names = set(services)
    if "open_library" in names:  # the stage that commits library snapshots (module_library)
        return MODULE_LIBRARY
    if "teacher" in names:
        return LLM_TEACHER
    if names & {"generator", "make_generator"}:
        return LLM_GENERATOR
    if "sandbox" in names:
        return SANDBOX
    return None


def pool_limits(overrides: Mapping[str, int] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """Every pool's limit: the fixed ones, then the sized ones from ``AMR_POOL_<NAME>`` (e.g.
    ``AMR_POOL_SANDBOX=8``) or ``overrides``. Raises ValueError for an unknown pool, a limit
    below 1, or an attempt to raise a fixed pool above 1."""
    environ = os.environ if environ is None else environ
    limits = dict(FIXED)
    for name, default in SIZED.items():
        text = environ.get(f"AMR_POOL_{name.upper()}")
        limits[name] = int(text) if text else default
    for name, value in (overrides or {}).items():
        if name not in limits:
            raise ValueError(f"unknown pool {name!r}; pools are {', '.join(POOLS)}")
        if name in FIXED and value != FIXED[name]:
            raise ValueError(f"pool {name!r} guards ordered shared state: its limit is {FIXED[name]}")
        limits[name] = int(value)
    bad = {name: value for name, value in limits.items() if value < 1}
    if bad:
        raise ValueError(f"pool limits must be at least 1: {bad}")
    return limits
