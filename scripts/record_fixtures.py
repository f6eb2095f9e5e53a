"""Record real outputs of the embedded model for the generation parsing tests, and measure.

Runs the three SelfCodeAlign stages (S->C, C->I, I->R) with the project's real prompts over a
fixed list of small standard-library functions on the embedded Gemma 3 270M (llama.cpp), and
saves, per stage, every request's prompt, sampling parameters and raw completions to
``tests/fixtures/recorded/<stage>.json``. The parsing tests read those files: nothing in them is
invented. Re-record after changing a prompt template or the few-shot library:

    .venv/bin/python scripts/record_fixtures.py            # record (about 10-20 min on 2 cores)
    .venv/bin/python scripts/record_fixtures.py --measure  # also run accepted responses' tests

``--measure`` runs each parsed response against its own tests in a plain subprocess with a
timeout, in a temporary folder. That is only a rough yield measurement of the prompts on this
machine; the pipeline itself verifies in the sandbox resource, never like this.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from amr_dagster.generation.concepts import seed_concepts  # noqa: E402
from amr_dagster.generation.config import GenerationConfig  # noqa: E402
from amr_dagster.generation.fewshot import default_library  # noqa: E402
from amr_dagster.generation.instructions import instructions  # noqa: E402
from amr_dagster.generation.prompting import default_templates, prompt_version  # noqa: E402
from amr_dagster.generation.responses import responses  # noqa: E402
from amr_dagster.ids import row_id  # noqa: E402
from amr_dagster.llm.base import Completion, LLMRequest  # noqa: E402

# Small documented pure-Python functions of the standard library (module, function).
SEED_FUNCTIONS = [
    ("colorsys", "rgb_to_hsv"),
    ("shlex", "quote"),
    ("fnmatch", "filter"),
    ("string", "capwords"),
    ("html", "escape"),
    ("genericpath", "commonprefix"),
    ("statistics", "median_low"),
    ("calendar", "leapdays"),
    ("textwrap", "indent"),
    ("bisect", "insort_right"),
    ("posixpath", "splitext"),
    ("json.encoder", "py_encode_basestring"),
]

OUT_DIR = ROOT / "tests" / "fixtures" / "recorded"


class RecordingEngine:
    """Passes calls through and remembers each request with its completions."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.model_id = engine.model_id
        self.calls: list[tuple[LLMRequest, list[Completion]]] = []

    def generate(self, requests):
        answers = self.engine.generate(requests)
        self.calls.extend(zip(requests, answers))
        return answers

    def take(self) -> list[tuple[LLMRequest, list[Completion]]]:
        calls, self.calls = self.calls, []
        return calls


def stdlib_seeds() -> pl.DataFrame:
    """The seed functions, read from the installed standard library's source files with ast
    (a C accelerator may shadow the Python definition at runtime, e.g. bisect;
    some modules are frozen and have no source file attached at runtime)."""
    rows = []
    for module_name, function_name in SEED_FUNCTIONS:
        base = Path(sysconfig.get_paths()["stdlib"], *module_name.split("."))
        path = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        source = path.read_text(encoding="utf-8")
        node = next(
            n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == function_name
        )
        code = "\n".join(source.splitlines()[node.lineno - 1 : node.end_lineno]) + "\n"
        rows.append(
            {
                "id": row_id(f"{module_name}.{function_name}", code),
                "batch": "record-fixtures",
                "source_path": f"{path.name}:{node.lineno}",
                "name": function_name,
                "docstring": ast.get_docstring(node),
                "code": code,
                "status": "accepted",
                "reject_reason": None,
            }
        )
    return pl.DataFrame(rows)


def save(stage: str, inputs: pl.DataFrame, calls, config: GenerationConfig, model_id: str, usage: dict) -> None:
    """One JSON file per stage: its input rows (so the stage can be replayed on exactly them),
    and every request with its prompt, parameters and raw completions."""
    records = []
    for request, completions in calls:
        records.append(
            {
                "tag": request.tag,
                "prompt": request.prompt,
                "params": {**asdict(request.params), "stop": list(request.params.stop)},
                "completions": [
                    {
                        "sample_index": c.sample_index,
                        "text": c.text,
                        "finish_reason": c.finish_reason,
                        "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens,
                        "error": c.error,
                    }
                    for c in completions
                ],
            }
        )
    document = {
        "stage": stage,
        "model_id": model_id,
        "prompt_version": prompt_version(default_templates(), default_library()),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "usage": usage,  # a re-save from the LLM cache shows cache hits and ~0 s here
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "inputs": inputs.filter(pl.col("status") == "accepted").to_dicts(),
        "records": records,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{stage}.json").write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


RUNNER = """
import sys
namespace = {"__name__": "solution"}
exec(compile(open(sys.argv[1]).read(), "solution.py", "exec"), namespace)
exec(compile(open(sys.argv[2]).read(), "tests.py", "exec"), namespace)
tests = [v for k, v in list(namespace.items()) if k.startswith("test_") and callable(v)]
for test in tests:
    test()
print("TESTS_RAN", len(tests))
"""


def run_own_tests(code: str, tests: str, timeout: float = 10.0) -> str:
    """passed / failed / timeout for one response (rough measurement, plain subprocess)."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "solution.py").write_text(code)
        Path(folder, "tests.py").write_text(tests)
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-c", RUNNER, "solution.py", "tests.py"],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                env={"PATH": os.environ.get("PATH", "/usr/bin")},
            )
        except subprocess.TimeoutExpired:
            return "timeout"
    # top-level asserts in the tests also count: they ran when the tests module was executed
    return "passed" if done.returncode == 0 and "TESTS_RAN" in done.stdout else "failed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="run parsed responses against their tests")
    parser.add_argument("--n-samples", type=int, default=4)
    parser.add_argument("--response-max-tokens", type=int, default=GenerationConfig().response_max_tokens)
    parser.add_argument("--seeds", type=int, default=len(SEED_FUNCTIONS))
    parser.add_argument("--cache", default=str(ROOT / ".amr" / "record_fixtures_cache.sqlite"),
                        help="SQLite LLM cache, so a rerun after a prompt change re-asks only changed steps")
    parser.add_argument("--no-save", action="store_true", help="measure only; leave the fixtures alone")
    args = parser.parse_args()

    from amr_dagster.llm.cache import SQLiteCache
    from amr_dagster.llm.cached import CachedEngine
    from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine

    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    engine = RecordingEngine(CachedEngine(LlamaCppEngine(n_ctx=8192), SQLiteCache(args.cache)))
    config = GenerationConfig(n_samples=args.n_samples, response_max_tokens=args.response_max_tokens)
    seeds = stdlib_seeds().head(args.seeds)

    timings = {}
    frames = {}
    frame = seeds
    for stage, run in (("concepts", seed_concepts), ("instructions", instructions), ("responses", responses)):
        start = time.perf_counter()
        inputs = frame
        frame, stats = run(inputs, engine, config)
        seconds = time.perf_counter() - start
        timings[stage] = (seconds, stats["rows_in"], stats["llm"])
        frames[stage] = frame
        if not args.no_save:
            save(stage, inputs, engine.take(), config, engine.model_id, stats["llm"])
        else:
            engine.take()
        print(f"{stage}: in={stats['rows_in']} accepted={stats['accepted']} rejected={stats['rejected']} "
              f"reasons={stats['rejected_by_reason']} wall={seconds:.1f}s llm={stats['llm']}", flush=True)

    for stage, (seconds, rows_in, llm) in timings.items():
        per_row = seconds / rows_in if rows_in else 0.0
        print(f"timing {stage}: {per_row:.2f}s per input row, {llm['completion_tokens']} generated tokens, "
              f"{llm['cache_hits']} cache hits / {llm['requests']} requests")

    out = frames["responses"]
    parsed = out.filter(pl.col("status") == "accepted")
    print(f"responses: {out.height} samples, {parsed.height} parsed ({parsed.height / max(out.height, 1):.0%})")
    if args.measure and parsed.height:
        verdicts = [run_own_tests(r["code"], r["tests"]) for r in parsed.iter_rows(named=True)]
        passed = verdicts.count("passed")
        instructions_with_pass = parsed.with_columns(pl.Series("verdict", verdicts)).filter(
            pl.col("verdict") == "passed"
        )["parent_id"].n_unique()
        print(f"own tests: {passed}/{parsed.height} parsed samples pass "
              f"({passed / out.height:.0%} of all samples); "
              f"{instructions_with_pass}/{frames['instructions'].filter(pl.col('status') == 'accepted').height} "
              f"instructions have a passing sample")


if __name__ == "__main__":
    main()
