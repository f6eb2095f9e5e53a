"""Benchmark: the project's LLM path vs the naive one on a realistic few-shot stage (S->C).

Workload: >= 16 real seed functions (documented top-level functions of the running
interpreter's standard library, found with ``ast``), each turned into an 8-shot S->C prompt
(seed snippet -> coding concepts) with shots from the project's few-shot library.

- naive: one request at a time, a freshly sampled 8-shot prefix for every row.
- project: rows in groups of ``--group`` share one sampled 8-shot set (a different draw per
  group, so rows still see varied examples), the whole batch goes through ``CachedEngine`` at
  once, and the llama.cpp engine orders it so prompts sharing a prefix run back to back and
  reuse its KV cache.
- rerun: the project path again on the same workload: everything comes from the cache.

The two paths alternate group by group (naive rows of group 1, project batch of group 1, naive
rows of group 2, ...) with the KV cache cleared before each phase.

Both paths use the same loaded model, sampling parameters and stop strings; the ratio compares
generated tokens per second of wall time. One llama.cpp thread by default: on a machine shared
with other busy processes, llama.cpp's threads spin at barriers and two threads on two busy
cores run several times slower than one, which would drown both paths in scheduling noise
(``--threads 0`` uses every core, the engine's default on a dedicated machine).

The last line is exactly ``llm: <ratio>x naive, rerun <pct>% of first run``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import random
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from amr_dagster.generation.fewshot import FewShotExample, default_library
from amr_dagster.llm.base import LLMRequest, SamplingParams
from amr_dagster.llm.cache import SQLiteCache
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine

SEED_MODULES = (
    "textwrap", "shlex", "fnmatch", "posixpath", "genericpath", "colorsys", "heapq", "base64",
    "calendar", "statistics", "html", "string", "glob", "difflib", "quopri", "uu", "ntpath",
)
SHOTS = 8
HEADER = "Extract the key programming concepts from each Python snippet, as a comma-separated list.\n\n"


def seed_functions(count: int, max_lines: int = 25) -> list[tuple[str, str]]:
    """``count`` (qualified name, source) of documented top-level stdlib functions, deterministic."""
    per_module: list[list[tuple[str, str]]] = []
    for name in SEED_MODULES:
        try:
            module = importlib.import_module(name)
            source = inspect.getsource(module)
        except (ImportError, OSError, TypeError):
            continue
        found = []
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) and not node.name.startswith("_"):
                code = ast.get_source_segment(source, node) or ""
                if 4 <= code.count("\n") + 1 <= max_lines:
                    found.append((f"{name}.{node.name}", textwrap.dedent(code)))
        per_module.append(found)
    picked: list[tuple[str, str]] = []
    depth = 0
    while len(picked) < count and any(depth < len(f) for f in per_module):
        for found in per_module:
            if depth < len(found) and len(picked) < count:
                picked.append(found[depth])
        depth += 1
    if len(picked) < count:
        raise SystemExit(f"only {len(picked)} seed functions found, need {count}")
    return picked


def shot_text(example: FewShotExample) -> str:
    return f"### Snippet\n```python\n{example.seed.strip()}\n```\n### Concepts\n{', '.join(example.concepts)}\n\n"


def prompt_for(code: str, shots: list[FewShotExample]) -> str:
    return HEADER + "".join(shot_text(s) for s in shots) + f"### Snippet\n```python\n{code.strip()}\n```\n### Concepts\n"


def params(max_tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=("\n###", "\n\n"), seed=0)


def naive_requests(seeds, examples, max_tokens: int, rng: random.Random) -> list[LLMRequest]:
    return [
        LLMRequest(prompt=prompt_for(code, rng.sample(examples, SHOTS)), params=params(max_tokens), tag=name)
        for name, code in seeds
    ]


def project_requests(seeds, examples, max_tokens: int, group: int, rng: random.Random) -> list[LLMRequest]:
    requests = []
    for start in range(0, len(seeds), group):
        shots = rng.sample(examples, SHOTS)  # one draw per group of rows
        for name, code in seeds[start : start + group]:
            requests.append(LLMRequest(prompt=prompt_for(code, shots), params=params(max_tokens), tag=name))
    return requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (0 = all cores)")
    args = parser.parse_args(argv)

    examples = list(default_library().examples)
    seeds = seed_functions(args.rows)
    engine = LlamaCppEngine(n_ctx=8192, n_threads=args.threads or None)
    print(f"model {engine.model_id}, {len(seeds)} rows, {SHOTS}-shot, max_tokens {args.max_tokens}, "
          f"threads {args.threads or 'all'}, group {args.group}")

    naive = naive_requests(seeds, examples, args.max_tokens, random.Random(1))
    project = project_requests(seeds, examples, args.max_tokens, args.group, random.Random(2))

    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedEngine(engine, SQLiteCache(Path(tmp) / "llm_cache.sqlite"))
        # The two paths alternate group by group, so a load burst from other processes on a shared
        # machine hits both alike. The KV cache is cleared before every phase: neither path
        # profits from what the other evaluated.
        naive_s = project_s = 0.0
        naive_eval = project_eval = 0
        naive_tokens = naive_prompt = 0
        out: list = []
        for start in range(0, len(seeds), args.group):
            engine.llm.reset()
            evaluated0, started = engine.prompt_tokens_evaluated, time.perf_counter()
            for request in naive[start : start + args.group]:  # one at a time, fresh shots per row
                completion = engine.generate([request])[0][0]
                naive_tokens += completion.completion_tokens
                naive_prompt += completion.prompt_tokens
            naive_s += time.perf_counter() - started
            naive_eval += engine.prompt_tokens_evaluated - evaluated0

            engine.llm.reset()
            evaluated0, started = engine.prompt_tokens_evaluated, time.perf_counter()
            out += cached.generate(project[start : start + args.group])  # one batch per shot set
            project_s += time.perf_counter() - started
            project_eval += engine.prompt_tokens_evaluated - evaluated0

        naive_tps = naive_tokens / naive_s
        print(f"naive:   {naive_s:7.1f}s  {naive_tokens} generated tokens  {naive_tps:6.1f} tok/s  "
              f"prompt tokens {naive_prompt}, evaluated {naive_eval}")
        first = cached.reset_usage()
        project_tokens = sum(c.completion_tokens for row in out for c in row)
        project_tps = project_tokens / project_s
        print(f"project: {project_s:7.1f}s  {project_tokens} generated tokens  {project_tps:6.1f} tok/s  "
              f"prompt tokens {first.prompt_tokens}, evaluated {project_eval}; "
              f"cache hits {first.cache_hits} misses {first.cache_misses}")

        # Rerun: the whole workload as one batch, as a stage would send it.
        started = time.perf_counter()
        again = cached.generate(project)
        rerun_s = time.perf_counter() - started
        second = cached.usage
        assert [c.text for row in again for c in row] == [c.text for row in out for c in row]
        print(f"rerun:   {rerun_s:7.3f}s  cache hits {second.cache_hits} misses {second.cache_misses}")

    ratio = project_tps / naive_tps
    print(f"llm: {ratio:.2f}x naive, rerun {100 * rerun_s / project_s:.2f}% of first run")


if __name__ == "__main__":
    sys.exit(main())
