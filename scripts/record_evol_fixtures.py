"""Record real teacher outputs for the AMR-Evol parsing tests (never edit the JSON by hand).

Runs the real decomposition and evolution stages (``amr_dagster.evol``) with the embedded
Gemma 3 270M through llama.cpp and saves every request (prompt or messages, sampling
parameters) with the raw completion to ``tests/fixtures/recorded/evol_*.json``. The tests
replay these exact outputs by prompt, so a changed prompt makes them fail until re-recorded.

Inputs are real code: small documented functions of the Python standard library stand in for
direct responses (the instruction is their signature plus their docstring's first paragraph,
the code is their source minus the docstring, as generated responses rarely carry one; they were
not executed, so their verdict is left empty). The other stdlib functions form the
library searched for evolution, embedded with the bundled all-MiniLM-L6-v2 (cosine similarity,
exact top-k), which is what the project's module library does at scale.

    .venv/bin/python scripts/record_evol_fixtures.py            # ~5 min on 2 cores
    .venv/bin/python scripts/record_evol_fixtures.py --cases 8 --evolve 4
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import platform
import sys
import textwrap
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amr_dagster.evol.config import EvolConfig, prompt_version  # noqa: E402
from amr_dagster.evol.decomposition import decomposed_modules, module_query_text, retrieval_queries  # noqa: E402
from amr_dagster.evol.direct import choose_direct  # noqa: E402
from amr_dagster.evol.evolution import evolve_responses  # noqa: E402
from amr_dagster.ids import stable_id  # noqa: E402
from amr_dagster.llm.base import Completion, LLMRequest  # noqa: E402
from amr_dagster.llm.cache import SQLiteCache  # noqa: E402
from amr_dagster.llm.cached import CachedEngine  # noqa: E402
from amr_dagster.settings import cache_dir  # noqa: E402

STDLIB_MODULES = [
    "base64", "bisect", "calendar", "colorsys", "difflib", "email.utils", "fnmatch", "fractions",
    "glob", "heapq", "html", "inspect", "ipaddress", "keyword", "mimetypes", "ntpath", "os",
    "posixpath", "pprint", "quopri", "random", "reprlib", "shlex", "shutil", "statistics",
    "string", "textwrap", "tokenize", "urllib.parse", "uuid", "zipfile", "json", "gettext",
    "locale", "secrets", "operator", "functools", "copy", "platform", "sysconfig", "warnings",
]

OUT_DIR = ROOT / "tests" / "fixtures" / "recorded"


def stdlib_functions(max_lines: int = 25) -> list[dict[str, Any]]:
    """Small, documented, public, plain functions of the stdlib modules above, sorted."""
    found: list[dict[str, Any]] = []
    for module_name in STDLIB_MODULES:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != module_name:
                continue
            doc = inspect.getdoc(obj)
            try:
                source = textwrap.dedent(inspect.getsource(obj))
                signature = str(inspect.signature(obj))
            except (OSError, TypeError, ValueError):
                continue
            lines = source.count("\n")
            if not doc or not 4 <= lines <= max_lines or "self" in signature:
                continue
            summary = " ".join(doc.split("\n\n", 1)[0].split())
            found.append(
                {
                    "case_id": f"{module_name}.{name}",
                    "module": module_name,
                    "name": name,
                    "signature": f"{name}{signature}",
                    "description": summary,
                    "code": without_docstring(source.rstrip("\n")),
                }
            )
    return found


def without_docstring(source: str) -> str:
    """The function's source minus its docstring: generated direct responses rarely have one."""
    fn = ast.parse(source).body[0]
    first = fn.body[0] if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)):
        return source
    lines = source.split("\n")
    del lines[first.lineno - 1 : first.end_lineno]
    return "\n".join(lines)


def pick_cases(functions: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Round-robin over modules (at most one function per module per round) for variety."""
    by_module: dict[str, list[dict[str, Any]]] = {}
    for f in functions:
        by_module.setdefault(f["module"], []).append(f)
    cases: list[dict[str, Any]] = []
    while len(cases) < n and any(by_module.values()):
        for module in sorted(by_module):
            if by_module[module] and len(cases) < n:
                cases.append(by_module[module].pop(0))
    return cases


def executed_frame(cases: list[dict[str, Any]]) -> pl.DataFrame:
    """The cases as the executed-responses frame the stages read (never executed: no verdict)."""
    rows = []
    for c in cases:
        instruction = f"Write a Python function `{c['signature']}`. {c['description']}"
        instruction_id = stable_id("stdlib-instruction", c["case_id"])
        rows.append(
            {
                "id": stable_id("stdlib-response", c["case_id"]),
                "parent_id": instruction_id,
                "instruction": instruction,
                "response": f"```python\n{c['code']}\n```",
                "code": c["code"],
                "tests": None,
                "sandbox_status": None,
                "tests_passed": 0,
                "tests_run": 0,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.String, "parent_id": pl.String, "instruction": pl.String, "response": pl.String,
            "code": pl.String, "tests": pl.String, "sandbox_status": pl.String, "tests_passed": pl.Int64,
            "tests_run": pl.Int64,
        },
    )


class RecordedEngine:
    """Answers requests from an earlier recording (to record evolution without redoing stage 1)."""

    def __init__(self, records: list[dict[str, Any]], model_id: str) -> None:
        self.model_id = model_id
        self.by_prompt = {json.dumps([r["prompt"], r["messages"]]): r for r in records}

    def generate(self, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
        out = []
        for request in requests:
            messages = [list(m) for m in request.messages] if request.messages else None
            r = self.by_prompt[json.dumps([request.prompt, messages])]
            out.append([Completion(r["text"], r["finish_reason"], r["prompt_tokens"], r["completion_tokens"], 0, error=r["error"])])
        return out


class RecordingEngine:
    """Passes requests to the real engine and keeps every (request, completion) pair."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.model_id = engine.model_id
        self.records: list[dict[str, Any]] = []

    def generate(self, requests: Sequence[LLMRequest]) -> list[list[Completion]]:
        out = self.engine.generate(requests)
        for request, completions in zip(requests, out):
            for c in completions:
                self.records.append(
                    {
                        "tag": request.tag,
                        "prompt": request.prompt,
                        "messages": [list(m) for m in request.messages] if request.messages else None,
                        "params": asdict(request.params),
                        "text": c.text,
                        "finish_reason": c.finish_reason,
                        "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens,
                        "error": c.error,
                    }
                )
        return out


def library_retrieval(queries: pl.DataFrame, library: list[dict[str, Any]], k: int) -> tuple[pl.DataFrame, str]:
    """Exact cosine top-k of every query over the library (all-MiniLM-L6-v2 embeddings)."""
    from amr_dagster.evol.embeddings import SentenceEmbedder

    embedder = SentenceEmbedder()
    entry_text = [module_query_text(e["name"], e["signature"], e["description"]) for e in library]
    entries = embedder.embed(entry_text)
    asked = embedder.embed(queries.get_column("text").to_list()) if queries.height else np.zeros((0, entries.shape[1]))
    scores = asked @ entries.T
    rows = []
    for qi, query_id in enumerate(queries.get_column("query_id").to_list()):
        top = np.argsort(-scores[qi], kind="stable")[:k]
        rows.append(
            {
                "query_id": query_id,
                "retrieved": [
                    {
                        "entry_id": stable_id("stdlib-library", library[j]["case_id"]),
                        "similarity": round(float(scores[qi, j]), 6),
                        "name": library[j]["name"],
                        "signature": library[j]["signature"],
                        "description": library[j]["description"],
                        "code": library[j]["code"],
                    }
                    for j in top
                ],
            }
        )
    snapshot = "stdlib-" + stable_id(*[e["case_id"] for e in library], embedder.model_id, length=12)
    return pl.DataFrame(rows), snapshot


def save(name: str, meta: dict[str, Any], cases: list[dict[str, Any]], records: list[dict[str, Any]], extra: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, "cases": cases, **extra, "records": records}, indent=1, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=12, help="direct responses to decompose")
    ap.add_argument("--chat-cases", type=int, default=2, help="of those, also decomposed with chat messages")
    ap.add_argument("--evolve", type=int, default=6, help="direct responses to evolve")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--reuse-decomposition",
        action="store_true",
        help="take stage 1 from the existing evol_decomposition.json and record only evolution",
    )
    args = ap.parse_args()

    from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine
    import llama_cpp

    functions = stdlib_functions()
    cases = pick_cases(functions, args.cases)
    case_ids = {c["case_id"] for c in cases}
    library = [f for f in functions if f["case_id"] not in case_ids]
    executed = executed_frame(cases)
    # Behind the project's persistent cache: a crash loses no finished call, a rerun repeats none.
    cache = SQLiteCache(cache_dir() / "evol_fixture_llm_cache.sqlite")
    engine = RecordingEngine(CachedEngine(LlamaCppEngine(n_ctx=args.n_ctx, n_threads=args.threads), cache))
    config = EvolConfig()
    meta = {
        "model_id": engine.model_id,
        "prompt_version": prompt_version(),
        "llama_cpp_python": llama_cpp.__version__,
        "python": platform.python_version(),
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "script": "scripts/record_evol_fixtures.py",
        "config": asdict(config),
        "inputs": "stdlib functions as direct responses (see the script docstring)",
    }

    if args.reuse_decomposition:
        earlier = json.loads((OUT_DIR / "evol_decomposition.json").read_text())
        modules, stats = decomposed_modules(executed, RecordedEngine(earlier["records"], engine.model_id), config)
        print("decomposition (reused):", json.dumps(stats), flush=True)
    else:
        started = time.perf_counter()
        modules, stats = decomposed_modules(executed, engine, config)
        save(
            "evol_decomposition",
            {**meta, "seconds": round(time.perf_counter() - started, 1)},
            cases,
            engine.records,
            {"executed": executed.to_dicts()},
        )
        print("decomposition:", json.dumps(stats), flush=True)

    chat_cases = cases[: args.chat_cases]
    if chat_cases and not args.reuse_decomposition:
        engine.records = []
        chat_config = replace(config, chat=True)
        started = time.perf_counter()
        chat_executed = executed_frame(chat_cases)
        _, chat_stats = decomposed_modules(chat_executed, engine, chat_config)
        save(
            "evol_decomposition_chat",
            {**meta, "config": asdict(chat_config), "seconds": round(time.perf_counter() - started, 1)},
            chat_cases,
            engine.records,
            {"executed": chat_executed.to_dicts()},
        )
        print("decomposition (chat):", json.dumps(chat_stats), flush=True)

    evolve_cases = cases[: args.evolve]
    evolve_executed = executed_frame(evolve_cases)
    direct = choose_direct(evolve_executed, config.global_seed)
    retrieved, snapshot = library_retrieval(retrieval_queries(direct, modules, config), library, args.top_k)
    engine.records = []
    started = time.perf_counter()
    evolved, evo_stats = evolve_responses(direct, modules, retrieved, engine, config, library_snapshot=snapshot)
    save(
        "evol_evolution",
        {**meta, "seconds": round(time.perf_counter() - started, 1), "library_snapshot": snapshot, "library_size": len(library)},
        evolve_cases,
        engine.records,
        {"executed": evolve_executed.to_dicts(), "retrieved": retrieved.to_dicts()},
    )
    print("evolution:", json.dumps(evo_stats), flush=True)


if __name__ == "__main__":
    main()
