"""I->R (``responses``): n sampled responses with tests per instruction.

Per accepted instruction: one request with ``n_samples`` samples at ``response_temperature``,
seeded by the instruction id (the engine derives one seed per sample index). Each sample
becomes one row (``sample_index``, ``parent_id`` = the instruction id) parsed into explanation,
code and tests; rejections: ``no_code_block``, ``no_tests``, ``unterminated: ...``,
``syntax_error: code line N``, ``syntax_error: tests line N``, ``incomplete_code: <marker>``,
``tests_never_call_code``, ``too_few_assertions: N < M``, ``copied_fewshot: <id>``,
``llm_error: ...``. Execution against the tests is the next stage's job.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from amr_dagster.schemas import RESPONSE_SCHEMA
from amr_dagster.generation.calls import Timer, generate_grouped, llm_failure, usage_of
from amr_dagster.generation.concepts import llm_fields
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.fewshot import FewShotLibrary, library_named
from amr_dagster.generation.parsing import CopyDetector, parse_response
from amr_dagster.generation.prompting import (
    Templates,
    choose_shots,
    prompt_version,
    response_prompt,
    shot_key,
    templates_named,
)
from amr_dagster.ids import row_id, seed_for
from amr_dagster.llm.base import LLMEngine, LLMRequest, SamplingParams
from amr_dagster.outcomes import accepted, summarize


def response_request(
    parent_id: str, category: str | None, instruction: str, config: GenerationConfig, library: FewShotLibrary, templates: Templates
) -> tuple[LLMRequest, str, list]:
    """The I->R request of one instruction (its few-shot key and shots too): the pipeline's and
    ``bench.engines``' one definition of the prompt and sampling parameters."""
    key = f"{category}/{shot_key(parent_id, config.shot_sets)}"
    shots = choose_shots(
        library, key, config.response_shots, config.global_seed, "responses",
        prefer_category=category, difficulties=config.shot_difficulties,
    )
    params = SamplingParams(
        n=config.n_samples,
        temperature=config.response_temperature,
        top_p=config.top_p,
        max_tokens=config.response_max_tokens,
        stop=templates["responses"].stop,
        seed=seed_for(parent_id, config.global_seed, "responses") & 0x7FFFFFFF,
    )
    request = LLMRequest(prompt=response_prompt(templates, shots, instruction), params=params, tag=parent_id)
    return request, key, shots


def responses(
    frame: pl.DataFrame,
    engine: LLMEngine,
    config: GenerationConfig = GenerationConfig(),
    *,
    library: FewShotLibrary | None = None,
    templates: Templates | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``n_samples`` rows per accepted instruction (reads id, seed_id, batch, instruction, ...)."""
    library = library or library_named(config.fewshot_dir)
    templates = templates or templates_named(config.templates_file)
    version = prompt_version(templates, library)
    copies = CopyDetector({e.id: e.code for e in library.examples})
    parents = accepted(frame).to_dicts()
    with Timer() as timer:
        requests, keys, shot_lists = [], [], []
        for parent in parents:
            request, key, shots = response_request(parent["id"], parent.get("category"), parent["instruction"], config, library, templates)
            requests.append(request)
            keys.append(key)
            shot_lists.append(shots)
        answers = generate_grouped(engine, requests, keys, config.chunk_size, label="responses")
    rows = []
    for parent, shots, answer in zip(parents, shot_lists, answers):
        for completion in answer:
            reason = llm_failure(completion)
            explanation = code = tests = response = ""
            if reason is None:
                parsed = parse_response(
                    completion.text,
                    completion.finish_reason,
                    copies=copies,
                    min_assertions=config.min_test_assertions,
                    require_call=config.tests_must_call_code,
                    reject_incomplete=config.reject_incomplete_code,
                )
                explanation, code, tests, reason = parsed.explanation, parsed.code, parsed.tests, parsed.reason
                response = parsed.response if code else ""
            rows.append(
                {
                    "id": row_id(parent["id"], completion.text, completion.sample_index),
                    "parent_id": parent["id"],
                    "seed_id": parent.get("seed_id"),
                    "batch": parent.get("batch"),
                    "sample_index": completion.sample_index,
                    "concepts": list(parent.get("concepts") or []),
                    "category": parent.get("category"),
                    "difficulty": parent.get("difficulty"),
                    "language": parent.get("language") or config.language,
                    "instruction": parent["instruction"],
                    "response": response,
                    "explanation": explanation,
                    "code": code,
                    "tests": tests,
                    **llm_fields(shots, version, engine.model_id, completion, reason, config.profile),
                }
            )
    out = pl.DataFrame(rows, schema=RESPONSE_SCHEMA)
    stats = {
        "rows_in": len(parents),
        **summarize(out),
        "llm": usage_of([c for a in answers for c in a], timer.elapsed, engine.model_id),
    }
    return out, stats
