"""AMR-Evol stage 1: decompose each instruction's direct response into function modules.

For every instruction we pick one *direct* response (the SelfCodeAlign answer, already run in the
sandbox) and ask the teacher to break it into small reusable function modules, each a typed
signature plus a docstring. Modules are what the library is searched with: the more precise the
module, the more useful the retrieved code (the paper's "modular decomposition").

Choosing the direct response (``choose_direct``):

1. a passing sample if there is any, chosen uniformly at random among the passing ones with a
   per-instruction seed (``seed_for(instruction_id, global_seed, "direct")``), so the choice is
   the same on every machine and independent of row order;
2. else the "best parsed" sample: most tests passed, then highest fraction of tests passed, then
   the mildest verdict (failed < timeout < output_limit < oom < infra_error < never executed),
   ties again broken by the same seeded choice;
3. an instruction without any sample that has code gets a rejected row ``no_direct_response``.

The teacher writes Python stubs (see ``prompts/amr_evol.yaml``); ``parse_modules`` reads them with
``ast`` and, when the whole block does not parse (a tiny model often breaks one stub, or is cut off
by ``max_tokens``), one stub at a time, repairing an unterminated docstring. Every output is
accounted for: a response the teacher could not decompose becomes one rejected row naming it.
"""

from __future__ import annotations

import ast
import copy
import random
import re
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

import polars as pl
import yaml

from amr_dagster.ids import row_id, seed_for
from amr_dagster.llm.base import Completion, LLMEngine, LLMRequest, SamplingParams
from amr_dagster.outcomes import REASON, STATUS, summarize, with_status

# Columns read from the executed-responses frame (one row per sample, ``amr_dagster.generation.execution``).
# ``VERDICT`` is the sandbox status ("passed", "failed", "timeout", ...); ``status`` there only
# says whether the sample passed, so a failing sample is still a candidate direct response.
ID = "id"
PARENT = "parent_id"
INSTRUCTION = "instruction"
RESPONSE = "response"
CODE = "code"
TESTS = "tests"
VERDICT = "sandbox_status"
TESTS_PASSED = "tests_passed"
TESTS_RUN = "tests_run"

PASSED = "passed"
# Lower is better when no sample passed; None (never executed) ranks last.
_VERDICT_RANK = {"failed": 0, "timeout": 1, "output_limit": 2, "oom": 3, "infra_error": 4}


@dataclass(frozen=True)
class EvolConfig:
    """Settings shared by decomposition and evolution (the paper's ablation axes included).

    ``use_decomposition=False``: no module list in the evolution prompt, and retrieval queries
    come from the instruction and direct response (see ``retrieval_queries``).
    ``use_retrieval=False``: no retrieved library modules in the evolution prompt.
    ``chat=True``: send chat messages (instruct teachers) instead of a completion prompt.
    ``require_typed_signature=True`` rejects modules lacking a parameter or return annotation
    (``untyped_signature``); off by default because the embedded 270M teacher mostly copies the
    solution's own untyped ``def`` lines; every module row records ``typed`` either way.
    """

    global_seed: int = 0
    use_decomposition: bool = True
    use_retrieval: bool = True
    chat: bool = False
    temperature: float = 0.0
    top_p: float = 1.0
    decomposition_max_tokens: int = 384
    evolution_max_tokens: int = 512
    max_modules: int = 8
    require_typed_signature: bool = False
    max_retrieved: int = 3
    # Measured by bench/similarity_floor.py (600 stdlib functions, MiniLM): at 0.58 the right
    # module stays for 79% of queries, an unrelated best match gets through for 19% (100% at 0).
    min_similarity: float = 0.58
    max_retrieved_code_chars: int = 1200
    library_seeds: str = "executed"  # which seed functions enter the library: see evol/admission.py


@lru_cache(maxsize=1)
def evol_prompts() -> dict[str, Any]:
    """The versioned prompt file ``amr_dagster/prompts/amr_evol.yaml``, parsed once."""
    text = resources.files("amr_dagster").joinpath("prompts/amr_evol.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def prompt_version() -> str:
    return str(evol_prompts()["version"])


# --------------------------------------------------------------------------------------------
# Choosing the direct response
# --------------------------------------------------------------------------------------------

DIRECT_COLUMNS = {
    "instruction_id": pl.String,
    "instruction": pl.String,
    "direct_id": pl.String,
    "response": pl.String,
    "code": pl.String,
    "tests": pl.String,
    "sandbox_status": pl.String,
    "tests_passed": pl.Int64,
    "tests_run": pl.Int64,
    "direct_passed": pl.Boolean,
    "samples": pl.Int64,
    "passing_samples": pl.Int64,
}


def seeded_order(rows: list[dict[str, Any]], instruction_id: str, global_seed: int, salt: str = "direct") -> list[dict[str, Any]]:
    """``rows`` in a random order fixed by the instruction id and the global seed (not by input order)."""
    ordered = sorted(rows, key=lambda r: r[ID])
    random.Random(seed_for(instruction_id, global_seed, salt)).shuffle(ordered)
    return ordered


def _seeded_pick(rows: list[dict[str, Any]], instruction_id: str, global_seed: int) -> dict[str, Any]:
    return seeded_order(rows, instruction_id, global_seed)[0]


def _quality(row: dict[str, Any]) -> tuple[int, float, int]:
    """Sort key, larger is better, for samples of which none passed."""
    passed = int(row.get(TESTS_PASSED) or 0)
    run = int(row.get(TESTS_RUN) or 0)
    verdict_rank = _VERDICT_RANK.get(row.get(VERDICT) or "", len(_VERDICT_RANK))
    return passed, (passed / run if run else 0.0), -verdict_rank


def choose_direct(executed: pl.DataFrame, global_seed: int) -> pl.DataFrame:
    """One row per instruction: the direct response AMR-Evol starts from (see module docstring).

    ``executed`` needs the columns ``id, parent_id, instruction, response, code, tests, sandbox_status,
    tests_passed, tests_run`` (``parent_id`` is the instruction id). Rows are accepted, or
    rejected with ``no_direct_response`` when no sample of the instruction has code.
    """
    by_instruction: dict[str, list[dict[str, Any]]] = {}
    order: list[str] = []
    for row in executed.iter_rows(named=True):
        key = row[PARENT]
        if key not in by_instruction:
            by_instruction[key] = []
            order.append(key)
        by_instruction[key].append(row)

    out: list[dict[str, Any]] = []
    reasons: list[str | None] = []
    for instruction_id in order:
        samples = by_instruction[instruction_id]
        with_code = [r for r in samples if (r.get(CODE) or "").strip()]
        passing = [r for r in with_code if r.get(VERDICT) == PASSED]
        if passing:
            chosen = _seeded_pick(passing, instruction_id, global_seed)
        elif with_code:
            best = max(_quality(r) for r in with_code)
            chosen = _seeded_pick([r for r in with_code if _quality(r) == best], instruction_id, global_seed)
        else:
            chosen = None
        base = chosen or samples[0]
        out.append(
            {
                "instruction_id": instruction_id,
                "instruction": base.get(INSTRUCTION),
                "direct_id": chosen[ID] if chosen else None,
                "response": chosen.get(RESPONSE) if chosen else None,
                "code": chosen.get(CODE) if chosen else None,
                "tests": chosen.get(TESTS) if chosen else None,
                "sandbox_status": chosen.get(VERDICT) if chosen else None,
                "tests_passed": int(chosen.get(TESTS_PASSED) or 0) if chosen else 0,
                "tests_run": int(chosen.get(TESTS_RUN) or 0) if chosen else 0,
                "direct_passed": bool(chosen and chosen.get(VERDICT) == PASSED),
                "samples": len(samples),
                "passing_samples": len(passing),
            }
        )
        reasons.append(None if chosen else f"no_direct_response: none of {len(samples)} samples has code")
    return with_status(pl.DataFrame(out, schema=DIRECT_COLUMNS), reasons)


# --------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------


def _task_text(instruction: str, code: str) -> str:
    task = evol_prompts()["decomposition"]["task"]
    return task.format(instruction=instruction.strip(), code=code.strip("\n"))


def decomposition_request(instruction: str, code: str, config: EvolConfig, tag: str = "") -> LLMRequest:
    """The teacher request for one direct response: completion prompt, or chat when ``config.chat``."""
    p = evol_prompts()["decomposition"]
    example = p["example"]
    params = SamplingParams(
        n=1,
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.decomposition_max_tokens,
        stop=tuple(p["stop"]),
        seed=seed_for(tag, config.global_seed, "decompose"),
    )
    example_task = _task_text(example["instruction"], example["code"])
    example_answer = p["answer_open"] + example["modules"].strip("\n") + "\n" + p["answer_close"]
    target_task = _task_text(instruction, code)
    if config.chat:
        messages = (
            ("system", p["preamble"]),
            ("user", example_task),
            ("assistant", example_answer),
            ("user", target_task),
        )
        return LLMRequest(messages=messages, params=params, tag=tag)
    prompt = f"{p['preamble']}\n\n{example_task}\n{example_answer}\n\n{target_task}\n{p['answer_open']}"
    return LLMRequest(prompt=prompt, params=params, tag=tag)


# --------------------------------------------------------------------------------------------
# Parsing the teacher's stubs
# --------------------------------------------------------------------------------------------


@dataclass
class ParsedModule:
    """One stub the teacher wrote; ``reason`` is None when it is a usable module."""

    name: str | None
    signature: str | None
    description: str | None
    parameters: list[dict[str, str]] = field(default_factory=list)
    return_type: str | None = None
    returns: str | None = None
    typed: bool = False
    reason: str | None = None
    source: str = ""


_FENCE_OPEN = re.compile(r"^[ \t]*```[ \t]*(?:python|py)?[ \t]*$", re.MULTILINE | re.IGNORECASE)
_DEF_LINE = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]", re.MULTILINE)
_SECTION = re.compile(r"^(args|arguments|parameters|params|returns?|yields?|raises|examples?|notes?)\s*:\s*(.*)$", re.I)
_DOCSTRING = re.compile(r"^\s*(\"\"\"|''')(.*?)(?:\1|$)", re.S)  # first triple-quoted text
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def stub_block(text: str) -> str:
    """The stub code in a teacher output.

    A completion prompt ends inside an open fence, so the text runs up to the closing fence; a
    chat answer opens its own fence (prose before it is ignored). Anything from the next
    ``### `` heading or fence on is dropped.
    """
    opened = _FENCE_OPEN.search(text)
    if opened and _DEF_LINE.search(text[: opened.start()]) is None:  # an opening fence: skip to it
        text = text[opened.end():]
    text = text.split("```", 1)[0]
    text = re.split(r"^###\s", text, maxsplit=1, flags=re.MULTILINE)[0]
    return text.strip("\n")


def _signature_text(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """``name(args) -> ret`` normalized by ``ast.unparse`` (whitespace and quotes made canonical)."""
    stub = copy.copy(fn)
    stub.body = [ast.Expr(ast.Constant(...))]
    stub.decorator_list = []
    first = ast.unparse(ast.fix_missing_locations(stub)).split("\n", 1)[0]
    return first[len("def "):].rstrip(":")


def _all_args(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    a = fn.args
    args = [*a.posonlyargs, *a.args]
    if a.vararg:
        args.append(a.vararg)
    args.extend(a.kwonlyargs)
    if a.kwarg:
        args.append(a.kwarg)
    return args


def parse_docstring(doc: str) -> tuple[str, dict[str, str], str | None]:
    """Google-style docstring -> (description, {parameter: description}, returns text)."""
    description: list[str] = []
    params: dict[str, str] = {}
    returns: list[str] = []
    section = "description"
    current: str | None = None
    arg_indent: int | None = None  # indentation of the first "name: ..." line; deeper is continuation
    for raw in doc.strip().splitlines():
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        header = _SECTION.match(line)
        if header:
            kind = header.group(1).lower()
            section = "args" if kind.startswith(("arg", "param")) else "returns" if kind.startswith(("return", "yield")) else "other"
            current, arg_indent = None, None
            if section == "returns" and header.group(2):
                returns.append(header.group(2))
            continue
        if section == "description":
            if not line and description:
                section = "after_description"
            elif line:
                description.append(line)
        elif section == "args" and line:
            arg = _ARG_LINE.match(line)
            if arg and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent if arg_indent is None else arg_indent
                current = str(arg.group(1))
                params[current] = arg.group(3).strip()
            elif current is not None:
                params[current] = (params[current] + " " + line).strip()
        elif section == "returns" and line:
            returns.append(line)
    return " ".join(description), params, (" ".join(returns) or None)


def _module_from_def(fn: ast.FunctionDef | ast.AsyncFunctionDef, source: str, require_typed: bool) -> ParsedModule:
    signature = _signature_text(fn)
    doc = ast.get_docstring(fn) or ""
    description, arg_docs, returns = parse_docstring(doc)
    parameters = [
        {
            "name": a.arg,
            "type": ast.unparse(a.annotation) if a.annotation is not None else "",
            "description": arg_docs.get(a.arg, ""),
        }
        for a in _all_args(fn)
    ]
    return_type = ast.unparse(fn.returns) if fn.returns is not None else None
    untyped = [p["name"] for p in parameters if not p["type"] and p["name"] not in ("self", "cls")]
    if return_type is None:
        untyped.append("return")
    reason = None
    if require_typed and untyped:
        reason = "untyped_signature: " + ", ".join(untyped)
    elif not description:
        reason = "missing_description"
    return ParsedModule(
        fn.name, signature, description or None, parameters, return_type, returns, not untyped, reason, source
    )


def _chunks(block: str) -> list[str]:
    """Split a stub block at each outermost ``def`` line (nested defs stay in their chunk), dedented."""
    found = [(m.start(), len(m.group(0)) - len(m.group(0).lstrip())) for m in _DEF_LINE.finditer(block)]
    outermost = min((indent for _, indent in found), default=0)
    starts = [start for start, indent in found if indent == outermost]
    return [textwrap.dedent(block[s:e]).strip("\n") for s, e in zip(starts, [*starts[1:], len(block)])]


def _parse_chunk(chunk: str, require_typed: bool) -> ParsedModule:
    """One stub that did not parse with its neighbours: repair what a cut-off leaves, else say why."""
    for candidate in (chunk, chunk + '\n    """', chunk + "\n    '''", chunk + "\n    ..."):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        fns = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if fns:
            return _module_from_def(fns[0], chunk, require_typed)
    def_line = chunk.splitlines()[0].strip()
    header = re.match(r"(?:async\s+)?def\s+(\w+)\s*(.*?):?\s*$", def_line)
    name = header.group(1) if header else None
    if header is None or not header.group(2).startswith("("):
        return ParsedModule(name, None, None, reason=f"missing_signature: {def_line[:80]}", source=chunk)
    try:
        tree = ast.parse(f"def {name}{header.group(2)}: ...")
    except SyntaxError:
        return ParsedModule(name, None, None, reason=f"invalid_signature: {def_line[:80]}", source=chunk)
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    # A broken body does not matter for a module: keep the docstring if one can be read.
    body = chunk.split("\n", 1)[1] if "\n" in chunk else ""
    doc = _DOCSTRING.search(body)
    if doc:
        fn.body = [ast.Expr(ast.Constant(textwrap.dedent(doc.group(2))))]
    return _module_from_def(fn, chunk, require_typed)


@lru_cache(maxsize=1)
def _example_names() -> frozenset[str]:
    """Names of the one-shot example's modules: a small model sometimes just repeats them."""
    example = evol_prompts()["decomposition"]["example"]["modules"]
    return frozenset(n.name for n in ast.parse(example).body if isinstance(n, ast.FunctionDef))


def parse_modules(
    text: str, config: EvolConfig | None = None, solution_code: str = ""
) -> tuple[list[ParsedModule], str | None]:
    """Teacher output -> (modules in order, output-level reject reason or None).

    Only top-level ``def`` stubs count (a body, if the model wrote one, is ignored). A stub named
    like a one-shot example module, a name the decomposed ``solution_code`` never uses, is
    ``copied_example``; a name already taken is ``duplicate_module_name``; stubs beyond
    ``max_modules`` are ``too_many_modules``. An output without a single ``def`` is
    ``unparsed_output``.
    """
    config = config or EvolConfig()
    block = stub_block(text)
    modules: list[ParsedModule] = []
    try:
        tree = ast.parse(block)
        fns = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        modules = [
            _module_from_def(fn, ast.get_source_segment(block, fn) or "", config.require_typed_signature) for fn in fns
        ]
    except SyntaxError:
        modules = [_parse_chunk(c, config.require_typed_signature) for c in _chunks(block)]
    if not modules:
        detail = "empty output" if not text.strip() else "no def stub found"
        return [], f"unparsed_output: {detail}"
    copied = {name for name in _example_names() if name not in solution_code}
    seen: set[str] = set()
    usable = 0
    for m in modules:
        if m.reason is not None:
            continue
        if m.name in copied:
            m.reason = f"copied_example: {m.name}"
        elif m.name in seen:
            m.reason = f"duplicate_module_name: {m.name}"
        elif usable >= config.max_modules:
            m.reason = f"too_many_modules: more than {config.max_modules}"
        else:
            seen.add(m.name or "")
            usable += 1
    return modules, None


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------

MODULE_COLUMNS = {
    "module_id": pl.String,
    "parent_id": pl.String,
    "instruction_id": pl.String,
    "name": pl.String,
    "signature": pl.String,
    "description": pl.String,
    "parameters": pl.List(pl.Struct({"name": pl.String, "type": pl.String, "description": pl.String})),
    "return_type": pl.String,
    "returns": pl.String,
    "typed": pl.Boolean,
    "source": pl.String,
    "position": pl.Int64,
    "direct_passed": pl.Boolean,
    "raw_output": pl.String,
    "model_id": pl.String,
    "prompt_version": pl.String,
}


def module_query_text(name: str, signature: str, description: str) -> str:
    """What a decomposed module is embedded as when the library is searched: the library's own
    ``query_text``, so queries and entries are written the same way."""
    from amr_dagster.evol.module_library import query_text

    return query_text(name, signature, description)


def _output_row(direct: dict[str, Any], model_id: str | None, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(MODULE_COLUMNS)
    row.update(
        parent_id=direct["direct_id"],
        instruction_id=direct["instruction_id"],
        parameters=[],
        direct_passed=direct["direct_passed"],
        model_id=model_id,
        prompt_version=prompt_version(),
    )
    row.update(values)
    return row


def decomposed_modules(
    executed: pl.DataFrame, engine: LLMEngine, config: EvolConfig
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Executed responses -> function modules of each instruction's direct response.

    Output columns: ``module_id`` (``row_id(direct id, name + signature)``), ``parent_id`` (the
    direct response id), ``instruction_id``, ``name``, ``signature`` (``name(args) -> ret``),
    ``description``, ``parameters`` (list of {name, type, description}), ``return_type``,
    ``returns``, ``source`` (the stub as written), ``position``, ``direct_passed``,
    ``raw_output`` (only on output-level rejections), ``model_id``, ``prompt_version``,
    ``status``, ``reject_reason``. Every instruction yields at least one row.
    """
    direct = choose_direct(executed, config.global_seed)
    todo = [d for d in direct.iter_rows(named=True) if d[STATUS] == "accepted"]
    requests = [decomposition_request(d["instruction"] or "", d["code"], config, tag=d["direct_id"]) for d in todo]
    completions: Sequence[list[Completion]] = engine.generate(requests) if requests else []
    model_id = getattr(engine, "model_id", None)

    rows: list[dict[str, Any]] = []
    reasons: list[str | None] = []
    for d in direct.iter_rows(named=True):
        if d[STATUS] != "accepted":
            rows.append(_output_row(d, model_id, module_id=row_id(d["instruction_id"], "no_direct_response")))
            reasons.append(d[REASON])
    decomposed = 0
    for d, [completion] in zip(todo, completions):
        if not completion.ok:
            rows.append(_output_row(d, model_id, module_id=row_id(d["direct_id"], "llm_error"), raw_output=completion.text))
            reasons.append(f"llm_error: {completion.error or completion.finish_reason}")
            continue
        modules, failure = parse_modules(completion.text, config, solution_code=d["code"] or "")
        if failure:
            rows.append(_output_row(d, model_id, module_id=row_id(d["direct_id"], completion.text), raw_output=completion.text))
            reasons.append(failure)
            continue
        decomposed += any(m.reason is None for m in modules)
        seen_ids: set[str] = set()
        for position, m in enumerate(modules):
            key = f"{m.name}{m.signature}" if m.signature else m.source
            module_id = row_id(d["direct_id"], key)
            if module_id in seen_ids:  # the same stub twice: keep ids unique
                module_id = row_id(d["direct_id"], key, position)
            seen_ids.add(module_id)
            rows.append(
                _output_row(
                    d,
                    model_id,
                    module_id=module_id,
                    name=m.name,
                    signature=m.signature,
                    description=m.description,
                    parameters=m.parameters,
                    return_type=m.return_type,
                    returns=m.returns,
                    typed=m.typed if m.signature else None,
                    source=m.source,
                    position=position,
                )
            )
            reasons.append(m.reason)
    frame = with_status(pl.DataFrame(rows, schema=MODULE_COLUMNS), reasons)
    usable = frame.filter(pl.col(STATUS) == "accepted")
    stats = {
        **summarize(frame),
        "instructions": direct.height,
        "direct_chosen": len(todo),
        "direct_passing": int(direct.get_column("direct_passed").sum()) if direct.height else 0,
        "responses_decomposed": decomposed,
        "decomposition_parse_rate": round(decomposed / len(todo), 4) if todo else 0.0,
        "modules_per_decomposed_response": round(usable.height / decomposed, 3) if decomposed else 0.0,
        "modules_typed_rate": round(int(usable.get_column("typed").sum()) / usable.height, 4) if usable.height else 0.0,
    }
    return frame, stats


def retrieval_queries(direct: pl.DataFrame, modules: pl.DataFrame | None, config: EvolConfig) -> pl.DataFrame:
    """What to search the library with: ``query_id, instruction_id, text``.

    With decomposition, one query per accepted module (``query_id`` = ``module_id``, text from
    ``module_query_text``). Without it (the ablation), and for a direct response the teacher
    could not decompose, one query built from the instruction and the code (``query_id`` = the
    direct response id).
    """
    schema = {"query_id": pl.String, "instruction_id": pl.String, "text": pl.String}
    rows: list[dict[str, Any]] = []
    if config.use_decomposition and modules is not None and not modules.is_empty():
        for m in modules.filter(pl.col(STATUS) == "accepted").iter_rows(named=True):
            text = module_query_text(m["name"], m["signature"], m["description"] or "")
            rows.append({"query_id": m["module_id"], "instruction_id": m["instruction_id"], "text": text})
    covered = {r["instruction_id"] for r in rows}
    for d in direct.filter(pl.col(STATUS) == "accepted").iter_rows(named=True):
        if d["instruction_id"] not in covered:
            text = f"{d['instruction']}\n{d['code']}"
            rows.append({"query_id": d["direct_id"], "instruction_id": d["instruction_id"], "text": text})
    return pl.DataFrame(rows, schema=schema)
