"""C->I (``instructions``): a new coding task from each seed's concepts.

Per accepted concepts row: a category drawn from function/function/class/program and a
difficulty from easy/medium/hard (both seeded by the row id), then ``instruction_attempts``
completions (1 by default) of a prompt that shows few-shot properties -> instruction examples;
the first that parses is kept. Every input row yields one output row; rejections (of the first
attempt when none parses): ``empty``, ``too_short: N chars``,
``too_long: N chars``, ``unterminated: hit max_tokens``, ``repetitive``,
``copied_fewshot: <example id>``, ``llm_error: ...``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from amr_dagster.schemas import INSTRUCTION_SCHEMA
from amr_dagster.generation.calls import Timer, first_accepted, generate_grouped, usage_of
from amr_dagster.generation.concepts import llm_fields
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.fewshot import FewShotLibrary, library_named
from amr_dagster.generation.parsing import CopyDetector, parse_instruction
from amr_dagster.generation.prompting import (
    Templates,
    choose_shots,
    draw_property,
    instruction_prompt,
    prompt_version,
    shot_key,
    templates_named,
)
from amr_dagster.ids import request_seed, row_id
from amr_dagster.llm.base import LLMEngine, LLMRequest, SamplingParams
from amr_dagster.outcomes import accepted, summarize


def instructions(
    frame: pl.DataFrame,
    engine: LLMEngine,
    config: GenerationConfig = GenerationConfig(),
    *,
    library: FewShotLibrary | None = None,
    templates: Templates | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One instruction row per accepted concepts row (reads id, seed_id, batch, concepts)."""
    library = library or library_named(config.fewshot_dir)
    templates = templates or templates_named(config.templates_file)
    version = prompt_version(templates, library)
    step = templates["instructions"]
    copies = CopyDetector({e.id: e.instruction for e in library.examples})
    parents = accepted(frame).to_dicts()
    with Timer() as timer:
        requests, keys, drawn = [], [], []
        for parent in parents:
            category = draw_property(parent["id"], config.global_seed, "category", config.categories)
            difficulty = draw_property(parent["id"], config.global_seed, "difficulty", config.difficulties)
            # Rows of one shot set and one category share the whole few-shot prefix.
            key = f"{category}/{shot_key(parent['id'], config.shot_sets)}"
            shots = choose_shots(
                library, key, config.instruction_shots, config.global_seed, "instructions",
                prefer_category=category, difficulties=config.shot_difficulties, only_category=config.same_category_shots,
            )
            prompt = instruction_prompt(templates, shots, parent["concepts"], category, difficulty, config.language)
            params = SamplingParams(
                n=config.instruction_attempts,
                temperature=config.instruction_temperature,
                top_p=config.top_p,
                max_tokens=config.instruction_max_tokens,
                stop=step.stop,
                seed=request_seed(parent["id"], config.global_seed, "instructions"),
            )
            requests.append(LLMRequest(prompt=prompt, params=params, tag=parent["id"]))
            keys.append(key)
            drawn.append((category, difficulty, shots))
        answers = generate_grouped(engine, requests, keys, config.chunk_size, label="instructions")
    def parse(completion):
        return parse_instruction(
            completion.text,
            completion.finish_reason,
            min_chars=config.min_instruction_chars,
            max_chars=config.max_instruction_chars,
            copies=copies,
            paragraphs=config.instruction_paragraphs,
            max_words=config.max_instruction_words,
        )

    rows, retried = [], 0
    for parent, (category, difficulty, shots), answer in zip(parents, drawn, answers):
        completion, parsed, reason, attempt = first_accepted(answer, parse)
        text = parsed.instruction if parsed is not None else ""
        retried += reason is None and attempt > 0
        rows.append(
            {
                "id": row_id(parent["id"], completion.text),
                "parent_id": parent["id"],
                "seed_id": parent.get("seed_id") or parent["id"],
                "batch": parent.get("batch"),
                "concepts": list(parent.get("concepts") or []),
                "category": category,
                "difficulty": difficulty,
                "language": config.language,
                "instruction": text,
                **llm_fields(shots, version, engine.model_id, completion, reason, config.profile),
            }
        )
    out = pl.DataFrame(rows, schema=INSTRUCTION_SCHEMA)
    stats = {
        "rows_in": len(parents),
        **summarize(out),
        "accepted_on_a_later_attempt": retried,
        "llm": usage_of([c for a in answers for c in a], timer.elapsed, engine.model_id),
    }
    return out, stats
