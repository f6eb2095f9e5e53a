"""I->R (``responses``): n sampled responses with tests per instruction.

Per accepted instruction: one request with ``n_samples`` samples at ``response_temperature``,
seeded by the instruction id (the engine derives one seed per sample index). Each sample
becomes one row (``sample_index``, ``parent_id`` = the instruction id) parsed into explanation,
code and tests.

**Tests in a second call** (``tests_call``, the embedded default): the first call stops where
the tests would start (the templates' ``tests_lead``, ``### Tests``); a sample whose code block
closed and parses is continued by a second call (prompt + response + ``tests_lead``) that stops
at the tests' closing fence, and the row records the two joined (``raw_output``, summed token
counts, the second call's finish reason). A small base model rarely stops on its own after its
tests: it writes more headers, more tests or loops until ``max_tokens``; over half of the
one-call samples of a default run did (86% of their tokens), so most of the engine's time went
to text that was cut away. A stop and a token limit for each part bound both, and no tests are
written for code that cannot run. With ``tests_call=False`` one call writes both, as the reference does.

Rejections: ``no_code_block``, ``no_tests``, ``unterminated: ...``,
``syntax_error: code line N``, ``syntax_error: tests line N``, ``incomplete_code: <marker>``,
``tests_never_call_code``, ``too_few_assertions: N < M``, ``copied_fewshot: <id>``,
``llm_error: ...``. Execution against the tests is the next stage's job.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import polars as pl

from amr_dagster.schemas import RESPONSE_SCHEMA
from amr_dagster.generation.calls import Timer, generate_grouped, llm_failure, usage_of
from amr_dagster.generation.concepts import llm_fields
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.fewshot import FewShotLibrary, library_named
from amr_dagster.generation.parsing import FINISH_LENGTH, CopyDetector, code_problem, parse_response
from amr_dagster.generation.prompting import (
    StepTemplate,
    Templates,
    choose_shots,
    prompt_version,
    response_prompt,
    shot_key,
    templates_named,
)
from amr_dagster.ids import request_seed, row_id
from amr_dagster.llm.base import FINISH_STOP, Completion, LLMEngine, LLMRequest, SamplingParams
from amr_dagster.outcomes import accepted, summarize


def response_request(
    parent_id: str, category: str | None, instruction: str, config: GenerationConfig, library: FewShotLibrary, templates: Templates
) -> tuple[LLMRequest, str, list]:
    """The I->R request of one instruction (its few-shot key and shots too): the pipeline's and
    ``bench.engines``' one definition of the prompt and sampling parameters."""
    key = f"{category}/{shot_key(parent_id, config.shot_sets)}"
    shots = choose_shots(
        library, key, config.response_shots, config.global_seed, "responses",
        prefer_category=category, difficulties=config.shot_difficulties, only_category=config.same_category_shots,
    )
    params = SamplingParams(
        n=config.n_samples,
        temperature=config.response_temperature,
        top_p=config.top_p,
        max_tokens=config.response_max_tokens,
        stop=response_stop(templates["responses"], config),
        seed=request_seed(parent_id, config.global_seed, "responses"),
    )
    request = LLMRequest(prompt=response_prompt(templates, shots, instruction), params=params, tag=parent_id)
    return request, key, shots


def response_stop(step: StepTemplate, config: GenerationConfig) -> tuple[str, ...]:
    """The first call's stop strings: with ``tests_call`` it also stops at the tests header."""
    if not config.tests_call:
        return step.stop
    if not step.tests_lead:
        raise ValueError(
            f"tests_call needs 'responses.tests_lead' and 'responses.tests_stop' in {config.templates_file}; "
            "add them or set tests_call: false"
        )
    return (*step.stop, "\n" + step.tests_lead.strip("\n").split("\n", 1)[0])


def wants_tests(completion: Completion) -> bool:
    """A first-call sample worth a tests call: it stopped by itself, with a closed code block
    that parses and no tests of its own."""
    if not completion.ok or completion.finish_reason == FINISH_LENGTH:
        return False
    parsed = parse_response(completion.text, completion.finish_reason)
    return parsed.reason == "no_tests" and bool(parsed.code) and code_problem(parsed.code) is None


def tests_request(first: LLMRequest, completion: Completion, step: StepTemplate, config: GenerationConfig) -> LLMRequest:
    """The second call of one sample: its prompt and response, then the tests lead."""
    tag = f"{first.tag}/{completion.sample_index}"
    params = SamplingParams(
        n=1,
        temperature=config.response_temperature,
        top_p=config.top_p,
        max_tokens=config.tests_max_tokens,
        stop=step.tests_stop,
        seed=request_seed(tag, config.global_seed, "tests"),
    )
    return LLMRequest(prompt=first.prompt + completion.text.rstrip("\n") + "\n" + step.tests_lead, params=params, tag=tag)


def joined(first: Completion, tests: Completion, step: StepTemplate) -> Completion:
    """One sample's two calls as one completion: the text a one-call sample would have written
    (the closing fence put back when the tests call stopped at it), tokens summed, the tests
    call's finish reason and error."""
    body = tests.text.rstrip("\n") + "\n" + step.tests_stop[0] if tests.finish_reason == FINISH_STOP else tests.text
    return replace(
        first,
        text=first.text.rstrip("\n") + "\n" + step.tests_lead + body,
        finish_reason=tests.finish_reason,
        prompt_tokens=first.prompt_tokens + tests.prompt_tokens,
        completion_tokens=first.completion_tokens + tests.completion_tokens,
        cached=first.cached and tests.cached,
        error=tests.error,
    )


def add_tests(
    engine: LLMEngine,
    requests: Sequence[LLMRequest],
    keys: Sequence[str],
    answers: list[list[Completion]],
    step: StepTemplate,
    config: GenerationConfig,
) -> list[Completion]:
    """Run the tests calls of every sample that wants one; ``answers`` get the joined samples.
    Returns the tests calls' own completions (for the usage figures)."""
    wanted = [(i, j) for i, answer in enumerate(answers) for j, c in enumerate(answer) if wants_tests(c)]
    if not wanted:
        return []
    second = [tests_request(requests[i], answers[i][j], step, config) for i, j in wanted]
    chunk = config.chunk_size * config.n_samples  # as many samples per engine call as the first calls
    results = generate_grouped(engine, second, [keys[i] for i, _ in wanted], chunk, label="tests")
    for (i, j), result in zip(wanted, results):
        answers[i][j] = joined(answers[i][j], result[0], step)
    return [result[0] for result in results]


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
        first_calls = [c for a in answers for c in a]
        tests_calls = add_tests(engine, requests, keys, answers, templates["responses"], config) if config.tests_call else []
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
                if reason == "no_tests" and code and config.tests_call:  # no tests call: say why
                    reason = code_problem(code) or reason
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
        "llm": usage_of(first_calls + tests_calls, timer.elapsed, engine.model_id),
    }
    return out, stats
