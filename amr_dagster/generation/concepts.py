"""S->C (``seed_concepts``): the programming concepts each seed function uses.

``concept_attempts`` completions per accepted seed (1 by default; the first that parses is
kept); the prompt shows few-shot function -> concept-line examples and leaves the seed's concept
line open. Every seed yields one row: accepted with a list of concepts, or rejected (the first
attempt's reason: ``unparsed: no concepts``, ``unterminated: hit max_tokens``,
``llm_error: ...``). Columns: see ``CONCEPT_SCHEMA``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from amr_dagster.schemas import CONCEPT_SCHEMA
from amr_dagster.generation.calls import Timer, first_accepted, generate_grouped, usage_of
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.fewshot import FewShotLibrary, library_named
from amr_dagster.generation.parsing import parse_concepts
from amr_dagster.generation.prompting import (
    Templates,
    choose_shots,
    concepts_prompt,
    prompt_version,
    shot_key,
    templates_named,
)
from amr_dagster.ids import request_seed, row_id
from amr_dagster.llm.base import LLMEngine, LLMRequest, ModelIdentity, SamplingParams
from amr_dagster.outcomes import accepted, summarize


def truncate_seed(code: str, max_chars: int) -> str:
    """Keep whole lines up to ``max_chars`` so a long seed cannot crowd out the few-shot prefix."""
    if len(code) <= max_chars:
        return code
    cut = code.rfind("\n", 0, max_chars)
    return code[: cut if cut > 0 else max_chars]


def llm_fields(
    shots: list, version: str, model_id: str, completion: Any, reason: str | None, profile: str = ""
) -> dict[str, Any]:
    """The columns every LLM stage records about the call that produced a row (and the
    settings profile it ran under)."""
    identity = getattr(completion, "identity", None) or ModelIdentity.from_model_id(model_id)
    return {
        "shot_ids": [s.id for s in shots],
        "prompt_version": version,
        "model_id": model_id,
        "engine": identity.engine,
        "model": identity.model,
        "checkpoint_sha256": identity.checkpoint_sha256,
        "seeded": identity.seeded,
        "raw_output": completion.text,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "cached": completion.cached,
        "profile": profile,
        "status": "accepted" if reason is None else "rejected",
        "reject_reason": reason,
    }


def seed_concepts(
    frame: pl.DataFrame,
    engine: LLMEngine,
    config: GenerationConfig = GenerationConfig(),
    *,
    library: FewShotLibrary | None = None,
    templates: Templates | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One concepts row per accepted seed (columns id, batch, name, code are read)."""
    library = library or library_named(config.fewshot_dir)
    templates = templates or templates_named(config.templates_file)
    version = prompt_version(templates, library)
    step = templates["concepts"]
    seeds = accepted(frame).to_dicts()
    with Timer() as timer:
        requests, keys, shot_lists = [], [], []
        for seed in seeds:
            key = shot_key(seed["id"], config.shot_sets)
            shots = choose_shots(library, key, config.concept_shots, config.global_seed, "concepts")
            prompt = concepts_prompt(templates, shots, truncate_seed(seed["code"] or "", config.max_seed_chars))
            params = SamplingParams(
                n=config.concept_attempts,
                temperature=config.concepts_temperature,
                top_p=config.top_p,
                max_tokens=config.concepts_max_tokens,
                stop=step.stop,
                seed=request_seed(seed["id"], config.global_seed, "concepts"),
            )
            requests.append(LLMRequest(prompt=prompt, params=params, tag=seed["id"]))
            keys.append(key)
            shot_lists.append(shots)
        answers = generate_grouped(engine, requests, keys, config.chunk_size, label="seed_concepts")
    rows = []
    retried = 0
    for seed, shots, answer in zip(seeds, shot_lists, answers):
        completion, parsed, reason, attempt = first_accepted(
            answer, lambda c: parse_concepts(c.text, c.finish_reason, seed.get("name"), config.max_concepts)
        )
        concepts: tuple[str, ...] = parsed.concepts if parsed is not None else ()
        retried += reason is None and attempt > 0
        rows.append(
            {
                "id": row_id(seed["id"], completion.text),
                "parent_id": seed["id"],
                "seed_id": seed["id"],
                "batch": seed.get("batch"),
                "seed_name": seed.get("name"),
                "concepts": list(concepts),
                **llm_fields(shots, version, engine.model_id, completion, reason, config.profile),
            }
        )
    out = pl.DataFrame(rows, schema=CONCEPT_SCHEMA)
    completions = [c for a in answers for c in a]
    stats = {
        "rows_in": len(seeds), **summarize(out), "accepted_on_a_later_attempt": retried,
        "llm": usage_of(completions, timer.elapsed, engine.model_id),
    }
    return out, stats
