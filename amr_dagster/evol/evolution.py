"""AMR-Evol stage 2: adaptive response evolution with retrieved library modules.

The teacher sees the instruction, the direct response's code, its decomposed function modules
and the most similar verified library functions (each with its similarity), is told to use
library code only where it helps, and answers in the SelfCodeAlign response-plus-tests layout,
which the generation stage's own parser reads. Every evolved row records the library snapshot
and the library entry ids it was shown, so a dataset row can say what it was built from.

The ``retrieved`` frame (produced by the module library's retrieval) has one row per query:

- ``query_id`` (String): a decomposed ``module_id``, or the direct response id when
  decomposition is off (see ``decomposition.retrieval_queries``);
- ``retrieved`` (List of Struct): the top-k library entries for that query, each
  ``{entry_id: String, similarity: Float64, name: String, signature: String,
  description: String, code: String}``;
- optionally ``library_snapshot`` (String): the library version searched.

Per instruction the entries of all its queries are merged (an entry found twice keeps its best
similarity), entries below ``config.min_similarity`` dropped, and the best
``config.max_retrieved`` shown.

Ablations (``EvolConfig``): ``use_decomposition=False`` drops the "### Function modules"
section, ``use_retrieval=False`` drops the "### Library functions" section, in the one-shot
example and in the target alike; nothing else in the prompt changes (``evolution_sections``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import polars as pl

from amr_dagster.schemas import EVOLVED_COLUMNS
from amr_dagster.evol.config import EvolConfig, evol_prompts, prompt_version
from amr_dagster.evol.direct import choose_direct
from amr_dagster.generation.calls import generate_tracked
from amr_dagster.generation.parsing import CopyDetector, normalize_code, parse_response
from amr_dagster.ids import row_id, seed_for
from amr_dagster.llm.base import Completion, LLMEngine, LLMRequest, SamplingParams
from amr_dagster.outcomes import ACCEPTED, REASON, STATUS, summarize, with_status

Section = tuple[str, str]  # (section name, rendered text)


# --------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------


def module_stub(signature: str, description: str | None) -> str:
    """A decomposed module shown to the teacher: its signature and one-line docstring."""
    doc = (description or "").replace('"""', "'''").strip()
    return f'def {signature}:\n    """{doc}"""' if doc else f"def {signature}:\n    ..."


def library_entry_code(entry: dict[str, Any], max_chars: int) -> str:
    """A retrieved library entry's code (its stub when no code is stored), capped at ``max_chars``."""
    code = (entry.get("code") or "").strip("\n")
    if not code:
        return module_stub(entry.get("signature") or f"{entry.get('name')}()", entry.get("description"))
    if len(code) > max_chars:
        code = code[:max_chars].rstrip() + "\n    # ... (truncated)"
    return code


def evolution_sections(
    instruction: str,
    code: str,
    module_stubs: Sequence[str],
    library: Sequence[dict[str, Any]],
    config: EvolConfig,
) -> list[Section]:
    """The sections of one task, in order; a switched-off axis drops exactly its own section.

    ``library`` entries need ``similarity`` and ``code`` (see ``library_entry_code``). An empty
    module list or library also drops its section: there is nothing to show.
    """
    t = evol_prompts()["evolution"]
    sections: list[Section] = [
        ("instruction", t["instruction"].format(instruction=instruction.strip())),
        ("first_solution", t["first_solution"].format(code=code.strip("\n"))),
    ]
    if config.use_decomposition and module_stubs:
        sections.append(("modules", t["modules"].format(modules="\n\n".join(module_stubs))))
    if config.use_retrieval and library:
        entries = "\n".join(
            t["library_entry"].format(similarity=f"{e['similarity']:.2f}", code=library_entry_code(e, config.max_retrieved_code_chars))
            for e in library
        )
        sections.append(("library", t["library"].format(entries=entries)))
    return sections


def example_sections(config: EvolConfig) -> tuple[list[Section], str]:
    """The one-shot example's sections and its answer (response + tests)."""
    t = evol_prompts()["evolution"]
    ex = t["example"]
    stubs = [s.strip() for s in ex["modules"].split("\n\n") if s.strip()]
    sections = evolution_sections(ex["instruction"], ex["code"], stubs, ex["library"], config)
    answer = t["answer"].format(response=ex["response"].strip("\n"), tests=ex["tests"].strip("\n"))
    return sections, answer


@lru_cache(maxsize=1)
def example_copies() -> CopyDetector:
    """Spots an answer that (nearly) repeats the example's code: the parser's ``copied_fewshot``."""
    response = evol_prompts()["evolution"]["example"]["response"]
    code = response.split("```python", 1)[1].split("```", 1)[0]
    return CopyDetector({"amr-evol-example": code.strip("\n")})


def _join(sections: Sequence[Section]) -> str:
    return "\n".join(text for _, text in sections)


def evolution_request(
    instruction: str,
    code: str,
    module_stubs: Sequence[str],
    library: Sequence[dict[str, Any]],
    config: EvolConfig,
    tag: str = "",
) -> LLMRequest:
    """The teacher request: completion prompt ending in an open "### Response", or chat messages."""
    t = evol_prompts()["evolution"]
    example, example_answer = example_sections(config)
    target = evolution_sections(instruction, code, module_stubs, library, config)
    params = SamplingParams(
        n=1,
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.evolution_max_tokens,
        stop=tuple(t["stop"]),
        seed=seed_for(tag, config.global_seed, "evolve"),
    )
    if config.chat:
        messages = (
            ("system", t["preamble"]),
            ("user", _join(example)),
            ("assistant", example_answer),
            ("user", _join(target)),
        )
        return LLMRequest(messages=messages, params=params, tag=tag)
    prompt = "\n".join(
        [
            t["preamble"],
            "",
            t["header"].format(number=1),
            _join(example),
            example_answer,
            "",
            t["header"].format(number=2),
            _join(target),
            t["answer_open"],
        ]
    )
    return LLMRequest(prompt=prompt, params=params, tag=tag)


# --------------------------------------------------------------------------------------------
# Retrieved modules per instruction
# --------------------------------------------------------------------------------------------


def library_per_instruction(
    retrieved: pl.DataFrame | None, query_owner: dict[str, str], config: EvolConfig
) -> dict[str, list[dict[str, Any]]]:
    """instruction id -> the library entries to show (merged over its queries, best first)."""
    if retrieved is None or retrieved.is_empty():
        return {}
    best: dict[str, dict[str, dict[str, Any]]] = {}
    for row in retrieved.iter_rows(named=True):
        instruction_id = query_owner.get(row["query_id"])
        if instruction_id is None:
            continue
        entries = best.setdefault(instruction_id, {})
        for e in row["retrieved"] or []:
            if e["similarity"] is None or e["similarity"] < config.min_similarity:
                continue
            seen = entries.get(e["entry_id"])
            if seen is None or e["similarity"] > seen["similarity"]:
                entries[e["entry_id"]] = dict(e)
    return {
        k: sorted(v.values(), key=lambda e: (-e["similarity"], e["entry_id"]))[: config.max_retrieved]
        for k, v in best.items()
    }


def _snapshot(retrieved: pl.DataFrame | None, given: str | None) -> str | None:
    if given is not None or retrieved is None or "library_snapshot" not in retrieved.columns:
        return given
    values = retrieved.get_column("library_snapshot").drop_nulls().unique().sort().to_list()
    return ",".join(values) or None


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def evolve_responses(
    instructions_with_direct: pl.DataFrame,
    modules: pl.DataFrame | None,
    retrieved: pl.DataFrame | None,
    engine: LLMEngine,
    config: EvolConfig,
    library_snapshot: str | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One evolved response per instruction that has a direct response.

    ``instructions_with_direct``: ``choose_direct(executed, seed)`` (or the executed frame
    itself, which is passed through ``choose_direct``). ``modules``: the ``decomposed_modules``
    frame (accepted rows are shown). ``retrieved``: see the module docstring. Output columns are
    ``EVOLVED_COLUMNS`` plus ``status``/``reject_reason``: ``no_direct_response``,
    ``llm_error: ...``, or the response parser's reasons.
    """
    direct = instructions_with_direct
    if "direct_id" not in direct.columns:
        direct = choose_direct(direct, config.global_seed)
    module_rows: dict[str, list[dict[str, Any]]] = {}
    if modules is not None and not modules.is_empty():
        for m in modules.filter(pl.col(STATUS) == ACCEPTED).sort("position").iter_rows(named=True):
            module_rows.setdefault(m["instruction_id"], []).append(m)
    owner = {m["module_id"]: k for k, ms in module_rows.items() for m in ms}
    owner.update({d["direct_id"]: d["instruction_id"] for d in direct.iter_rows(named=True) if d["direct_id"]})
    library = library_per_instruction(retrieved, owner, config) if config.use_retrieval else {}
    snapshot = _snapshot(retrieved, library_snapshot) if config.use_retrieval else None
    model_id = getattr(engine, "model_id", None)

    todo: list[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]] = []
    for d in direct.iter_rows(named=True):
        if d[STATUS] != ACCEPTED:
            continue
        shown_modules = module_rows.get(d["instruction_id"], []) if config.use_decomposition else []
        todo.append((d, shown_modules, library.get(d["instruction_id"], [])))
    requests = [
        evolution_request(
            d["instruction"] or "",
            d["code"],
            [module_stub(m["signature"], m["description"]) for m in ms],
            lib,
            config,
            tag=d["direct_id"],
        )
        for d, ms, lib in todo
    ]
    completions: Sequence[list[Completion]] = generate_tracked(engine, requests, "evolved_responses")

    rows: list[dict[str, Any]] = []
    reasons: list[str | None] = []

    def base(d: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(EVOLVED_COLUMNS)
        row.update(
            parent_id=d["direct_id"],
            instruction_id=d["instruction_id"],
            instruction=d["instruction"],
            direct_passed=d["direct_passed"],
            module_ids=[],
            retrieved_module_ids=[],
            retrieved_similarities=[],
            library_snapshot=snapshot,
            use_decomposition=config.use_decomposition,
            use_retrieval=config.use_retrieval,
            model_id=model_id,
            prompt_version=prompt_version(),
        )
        return row

    for d in direct.iter_rows(named=True):
        if d[STATUS] != ACCEPTED:
            rows.append({**base(d), "id": row_id(d["instruction_id"], "no_direct_response")})
            reasons.append(d[REASON])
    for (d, ms, lib), [completion] in zip(todo, completions):
        row = base(d)
        row.update(
            id=row_id(d["direct_id"], completion.text, 0),
            raw_output=completion.text,
            finish_reason=completion.finish_reason,
            module_ids=[m["module_id"] for m in ms],
            retrieved_module_ids=[e["entry_id"] for e in lib],
            retrieved_similarities=[float(e["similarity"]) for e in lib],
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )
        if not completion.ok:
            rows.append(row)
            reasons.append(f"llm_error: {completion.error or completion.finish_reason}")
            continue
        parsed = parse_response(completion.text, completion.finish_reason, copies=example_copies())
        row.update(
            response=parsed.response if parsed.code else None,
            code=parsed.code or None,
            tests=parsed.tests or None,
            unchanged=bool(parsed.code) and normalize_code(parsed.code) == normalize_code(d["code"] or ""),
        )
        rows.append(row)
        reasons.append(parsed.reason)

    frame = with_status(pl.DataFrame(rows, schema=EVOLVED_COLUMNS), reasons)
    shown = [len(lib) for _, _, lib in todo]
    stats = {
        **summarize(frame),
        "evolution_requests": len(todo),
        "evolution_parse_rate": round(int((frame.get_column(STATUS) == ACCEPTED).sum()) / len(todo), 4)
        if todo
        else 0.0,
        "with_library_modules": sum(1 for n in shown if n),
        "library_modules_shown_mean": round(sum(shown) / len(shown), 3) if shown else 0.0,
        "library_snapshot": snapshot,
        "use_decomposition": config.use_decomposition,
        "use_retrieval": config.use_retrieval,
    }
    return frame, stats
