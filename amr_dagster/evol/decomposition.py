"""AMR-Evol stage 1: decompose each instruction's direct response into function modules.

For every instruction we pick one *direct* response (the SelfCodeAlign answer, already run in the
sandbox; ``amr_dagster.evol.direct``) and ask the teacher to break it into small reusable function
modules, each a typed signature plus a docstring. Modules are what the library is searched with:
the more precise the module, the more useful the retrieved code (the paper's "modular
decomposition"). The teacher writes Python stubs (see ``prompts/amr_evol.yaml``), read by
``amr_dagster.evol.stubs``. Every output is accounted for: a response the teacher could not
decompose becomes one rejected row naming it.
"""

from __future__ import annotations

from typing import Any, Sequence

import polars as pl

from amr_dagster.evol.config import EvolConfig, evol_prompts, prompt_version
from amr_dagster.evol.direct import choose_direct
from amr_dagster.evol.stubs import parse_modules
from amr_dagster.generation.calls import generate_tracked
from amr_dagster.ids import row_id, seed_for
from amr_dagster.llm.base import Completion, LLMEngine, LLMRequest, SamplingParams
from amr_dagster.outcomes import REASON, STATUS, summarize, with_status
from amr_dagster.schemas import MODULE_COLUMNS

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


def module_query_text(name: str, signature: str, description: str) -> str:
    """What a decomposed module is embedded as when the library is searched: the library's own
    ``query_text``, so queries and entries are written the same way."""
    from amr_dagster.evol.functions import query_text

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
    completions: Sequence[list[Completion]] = generate_tracked(engine, requests, "decomposed_modules")
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
