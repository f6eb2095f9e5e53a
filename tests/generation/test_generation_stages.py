"""The S->C, C->I and I->R stages: seeded choices, prompts, lineage, accounting, crash-resume.

Three kinds of engine appear here, each for what it can show:
- ``ReplayEngine`` serves the completions recorded from the real model (tests/fixtures/recorded,
  written by scripts/record_fixtures.py); any prompt the recording does not hold fails the test,
  so replaying also proves the stages rebuild exactly the recorded prompts.
- the real embedded Gemma 3 270M through llama.cpp (``llm`` marker; small max_tokens);
- the real model behind a wrapper that dies after k samples, for crash-resume.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from amr_dagster.generation.concepts import seed_concepts
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.profiles import load_profile
from amr_dagster.generation.fewshot import default_library
from amr_dagster.generation.instructions import instructions
from amr_dagster.generation.prompting import (
    choose_shots,
    concepts_prompt,
    default_templates,
    draw_property,
    load_templates,
    order_for_prefix_reuse,
    prompt_version,
    response_prompt,
    shot_key,
)
from amr_dagster.generation.responses import responses
from amr_dagster.schemas import CONCEPT_SCHEMA, INSTRUCTION_SCHEMA, RESPONSE_SCHEMA
from amr_dagster.llm.base import Completion, LLMRequest
from amr_dagster.outcomes import reason_prefix

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
STAGES = {"concepts": seed_concepts, "instructions": instructions, "responses": responses}
SCHEMAS = {"concepts": CONCEPT_SCHEMA, "instructions": INSTRUCTION_SCHEMA, "responses": RESPONSE_SCHEMA}
REASON_FAMILIES = {
    "concepts": {"unparsed", "unterminated", "llm_error"},
    "instructions": {
        "empty", "too_short", "too_long", "unterminated", "repetitive", "copied_fewshot", "llm_error", "too_many_words",
    },
    "responses": {
        "no_code_block", "no_tests", "unterminated", "syntax_error", "copied_fewshot", "llm_error",
        "tests_never_call_code", "too_few_assertions", "incomplete_code",
    },
}
LIBRARY = default_library()
TEMPLATES = default_templates()


def recording(stage: str) -> dict:
    return json.loads((RECORDED / f"{stage}.json").read_text())


# Settings added after the recordings were made, at the value they had then.
NOT_RECORDED = {"shot_difficulties": (), "tests_call": False, "same_category_shots": False}


def recorded_config(doc: dict) -> GenerationConfig:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in doc["config"].items()}
    return GenerationConfig(**{**NOT_RECORDED, **values})


def input_frame(doc: dict, stage: str) -> pl.DataFrame:
    if stage == "concepts":
        return pl.DataFrame(doc["inputs"])
    schema = {"concepts": CONCEPT_SCHEMA, "instructions": INSTRUCTION_SCHEMA}[
        "concepts" if stage == "instructions" else "instructions"
    ]
    return pl.DataFrame(doc["inputs"], schema=schema)


class ReplayEngine:
    """Serves recorded completions by (prompt, sampling parameters); unknown requests fail."""

    def __init__(self, doc: dict) -> None:
        self.model_id = doc["model_id"]
        self.calls = 0
        self.answers: dict[tuple, list[Completion]] = {}
        for record in doc["records"]:
            key = (record["prompt"], json.dumps(record["params"], sort_keys=True))
            self.answers[key] = [
                Completion(
                    text=c["text"],
                    finish_reason=c["finish_reason"],
                    prompt_tokens=c["prompt_tokens"],
                    completion_tokens=c["completion_tokens"],
                    sample_index=c["sample_index"],
                    error=c["error"],
                )
                for c in record["completions"]
            ]

    def generate(self, requests):
        out = []
        for request in requests:
            params = {
                "n": request.params.n,
                "temperature": request.params.temperature,
                "top_p": request.params.top_p,
                "max_tokens": request.params.max_tokens,
                "stop": list(request.params.stop),
                "seed": request.params.seed,
            }
            key = (request.prompt, json.dumps(params, sort_keys=True))
            assert key in self.answers, f"prompt for {request.tag} was not recorded (prompts changed?)"
            self.calls += 1
            out.append(self.answers[key])
        return out


# -- seeded choices and prompts -----------------------------------------------------------------


def test_category_and_difficulty_draws_are_per_row_and_weighted():
    ids = [f"row-{i}" for i in range(3000)]
    config = load_profile("selfcodealign").build("generation")  # the paper's weighted mix
    categories = Counter(draw_property(i, 0, "category", config.categories) for i in ids)
    difficulties = Counter(draw_property(i, 0, "difficulty", config.difficulties) for i in ids)
    assert 0.45 < categories["function"] / len(ids) < 0.55  # function, function, class, program
    assert 0.20 < categories["class"] / len(ids) < 0.30
    assert 0.20 < categories["program"] / len(ids) < 0.30
    assert all(0.28 < difficulties[d] / len(ids) < 0.39 for d in ("easy", "medium", "hard"))
    # per row, not per position: the same id draws the same whatever else is in the batch
    assert [draw_property(i, 0, "category", config.categories) for i in reversed(ids[:50])] == [
        draw_property(i, 0, "category", config.categories) for i in ids[:50]
    ][::-1]
    # and the global seed changes the draws
    other = [draw_property(i, 1, "category", config.categories) for i in ids[:200]]
    assert other != [draw_property(i, 0, "category", config.categories) for i in ids[:200]]


def test_shot_sets_share_prefixes_and_stay_varied():
    ids = [f"seed-{i}" for i in range(200)]
    per_row = {shot_key(i, 0) for i in ids}
    assert len(per_row) == len(ids)
    grouped = Counter(shot_key(i, 8) for i in ids)
    assert len(grouped) == 8 and min(grouped.values()) >= 10
    shot_sets = {tuple(s.id for s in choose_shots(LIBRARY, key, 4, 0, "concepts")) for key in grouped}
    assert len(shot_sets) == 8  # every set sees different examples
    for key in grouped:
        shots = choose_shots(LIBRARY, key, 4, 0, "concepts")
        assert len({s.id for s in shots}) == 4
        assert [s.id for s in shots] == [s.id for s in choose_shots(LIBRARY, key, 4, 0, "concepts")]


def test_last_shot_matches_the_requested_category():
    for category in ("function", "class", "program"):
        for i in range(20):
            shots = choose_shots(LIBRARY, f"k{i}", 3, 0, "responses", prefer_category=category)
            assert shots[-1].category == category and len({s.id for s in shots}) == 3


def test_only_category_draws_every_shot_of_it_when_there_are_enough():
    easy_fn = [e.id for e in LIBRARY.examples if (e.category, e.difficulty) == ("function", "easy")]
    assert len(easy_fn) == 3
    for i in range(10):
        shots = choose_shots(LIBRARY, f"k{i}", 3, 0, "responses", "function", ("easy",), only_category=True)
        assert sorted(s.id for s in shots) == sorted(easy_fn)
    # four shots of three: back to the last-shot rule
    shots = choose_shots(LIBRARY, "k", 4, 0, "instructions", "function", ("easy",), only_category=True)
    assert shots[-1].category == "function" and {s.category for s in shots} != {"function"}


def test_shot_difficulties_restrict_the_draw_unless_too_few_examples():
    easy = sum(e.difficulty == "easy" for e in LIBRARY.examples)
    assert 3 <= easy < len(LIBRARY.examples)
    for i in range(20):
        shots = choose_shots(LIBRARY, f"k{i}", 3, 0, "responses", prefer_category="function", difficulties=("easy",))
        assert {s.difficulty for s in shots} == {"easy"} and shots[-1].category == "function"
    # asking for more shots than the difficulty has falls back to the whole library
    shots = choose_shots(LIBRARY, "k", easy + 1, 0, "responses", difficulties=("easy",))
    assert len(shots) == easy + 1 and {s.difficulty for s in shots} != {"easy"}
    # empty = no restriction (the default), and the draw is unchanged by the new argument
    assert choose_shots(LIBRARY, "k", 3, 0, "responses") == choose_shots(LIBRARY, "k", 3, 0, "responses", difficulties=())


def test_rows_of_one_shot_set_are_sent_together():
    keys = ["b", "a", "b", "c", "a"]
    order = order_for_prefix_reuse(keys, ["r1", "r2", "r3", "r4", "r5"])
    assert [keys[i] for i in order] == ["a", "a", "b", "b", "c"]


def test_prompts_end_with_the_open_query_and_number_the_examples():
    shots = choose_shots(LIBRARY, "x", 3, 0, "responses")
    prompt = response_prompt(TEMPLATES, shots, "Write a function `double(x)` that returns twice x.")
    assert prompt.endswith("## Example 4\n### Instruction\nWrite a function `double(x)` that returns twice x.\n### Response\n")
    assert [prompt.index(f"## Example {n}\n") for n in (1, 2, 3)] == sorted(
        prompt.index(f"## Example {n}\n") for n in (1, 2, 3)
    )
    for shot in shots:
        assert shot.instruction in prompt and shot.tests in prompt
    prompt = concepts_prompt(TEMPLATES, shots[:2], "def f(x):\n    return x\n")
    assert prompt.endswith("### Concepts\n") and ", ".join(shots[0].concepts) in prompt
    assert prompt_version(TEMPLATES, LIBRARY) == f"{TEMPLATES.version}+fs.{LIBRARY.digest[:12]}"


def test_template_file_errors_name_the_field(tmp_path):
    text = (Path(__file__).resolve().parents[2] / "amr_dagster" / "prompts" / "selfcodealign.yaml").read_text()
    broken = tmp_path / "t.yaml"
    broken.write_text(text.replace("    ### Instruction\n  stop:", "    ### Instruction {oops}\n  stop:"))
    with pytest.raises(ValueError, match=r"t.yaml: field 'instructions.query': placeholders \['oops'\]"):
        load_templates(broken)
    broken.write_text(text.replace('version: "', 'old_version: "'))
    with pytest.raises(ValueError, match="field 'version'"):
        load_templates(broken)


# -- stages on recorded real outputs ------------------------------------------------------------


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_replays_recorded_model_outputs(stage):
    doc = recording(stage)
    config = recorded_config(doc)
    frame_in = input_frame(doc, stage)
    engine = ReplayEngine(doc)
    out, stats = STAGES[stage](frame_in, engine, config)

    assert engine.calls == len(doc["records"]) == frame_in.height  # prompts rebuilt exactly
    assert dict(out.schema) == SCHEMAS[stage]
    per_input = config.n_samples if stage == "responses" else 1
    assert out.height == frame_in.height * per_input
    assert stats["rows_in"] == frame_in.height
    assert stats["accepted"] + stats["rejected"] == out.height
    assert stats["llm"]["requests"] == out.height and stats["llm"]["model"] == doc["model_id"]
    assert out["id"].n_unique() == out.height
    assert set(out["parent_id"]) == set(frame_in["id"])
    assert set(out["prompt_version"]) == {doc["prompt_version"]}
    assert (out["status"] == "accepted").sum() == stats["accepted"]
    for status, reason in out.select("status", "reject_reason").iter_rows():
        assert (status == "accepted") == (reason is None)
        if reason is not None:
            assert reason_prefix(reason) in REASON_FAMILIES[stage], reason
    root = "id" if stage == "concepts" else "seed_id"
    seeds_of_inputs = dict(zip(frame_in["id"], frame_in[root]))
    for parent, seed in out.select("parent_id", "seed_id").iter_rows():
        assert seed == seeds_of_inputs[parent]
    if stage == "responses":
        assert sorted(Counter(out["parent_id"]).values()) == [config.n_samples] * frame_in.height
        assert set(out["sample_index"]) == set(range(config.n_samples))
        good = out.filter(pl.col("status") == "accepted")
        for row in good.iter_rows(named=True):
            compile(row["code"], "code", "exec")
            compile(row["tests"], "tests", "exec")
            assert row["response"].endswith(f"```python\n{row['code']}\n```")
    if stage == "instructions":
        assert set(out["language"]) == {"python"}
        assert set(out["category"]) <= {"function", "class", "program"}
        for row in out.iter_rows(named=True):
            assert row["category"] == draw_property(row["parent_id"], config.global_seed, "category", config.categories)


def test_stage_output_is_deterministic():
    doc = recording("instructions")
    config = recorded_config(doc)
    first, _ = instructions(input_frame(doc, "instructions"), ReplayEngine(doc), config)
    shuffled = input_frame(doc, "instructions").sample(fraction=1.0, shuffle=True, seed=7)
    second, _ = instructions(shuffled, ReplayEngine(doc), config)
    assert first.sort("id").equals(second.sort("id"))


def test_rejected_inputs_are_not_sent_and_empty_inputs_keep_the_schema():
    doc = recording("concepts")
    seeds = pl.DataFrame(doc["inputs"])
    engine = ReplayEngine(doc)
    rejected = seeds.with_columns(pl.lit("rejected").alias("status"), pl.lit("duplicate").alias("reject_reason"))
    out, stats = seed_concepts(rejected, engine, recorded_config(doc))
    assert engine.calls == 0 and out.height == 0 and dict(out.schema) == CONCEPT_SCHEMA
    assert stats["rows_in"] == 0
    for stage, schema in (("instructions", INSTRUCTION_SCHEMA), ("responses", RESPONSE_SCHEMA)):
        out, _ = STAGES[stage](pl.DataFrame(schema=SCHEMAS["concepts" if stage == "instructions" else "instructions"]), engine, GenerationConfig())
        assert out.height == 0 and dict(out.schema) == schema


# -- the real model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma():
    from amr_dagster.llm.registry import EngineSpec, shared_engine

    return shared_engine(EngineSpec(backend="llama_cpp", n_ctx=4096))


SMALL = GenerationConfig(
    concepts_max_tokens=24, instruction_max_tokens=40, response_max_tokens=48, n_samples=2, response_shots=2
)


@pytest.mark.llm
def test_stages_run_on_the_real_model(gemma):
    """Each stage on two recorded inputs with the real model and small max_tokens: every input
    is accounted for, lineage is kept, and nothing crashes on whatever the model writes."""
    from amr_dagster.llm.cache import MemoryCache
    from amr_dagster.llm.cached import CachedEngine

    engine = CachedEngine(gemma, MemoryCache())
    for stage in STAGES:
        frame_in = input_frame(recording(stage), stage).head(2)
        out, stats = STAGES[stage](frame_in, engine, SMALL)
        assert out.height == frame_in.height * (SMALL.n_samples if stage == "responses" else 1)
        assert stats["accepted"] + stats["rejected"] == out.height
        # responses: one more call per sample whose tests came from a tests call (tests_call)
        lead = TEMPLATES["responses"].tests_lead
        calls = out.height + (sum(lead in text for text in out["raw_output"]) if stage == "responses" else 0)
        assert stats["llm"]["cache_misses"] == calls and stats["llm"]["completion_tokens"] > 0
        assert set(out["parent_id"]) == set(frame_in["id"])
        assert set(out["model_id"]) == {gemma.model_id}
        for reason in out["reject_reason"].drop_nulls():
            assert reason_prefix(reason) in REASON_FAMILIES[stage], reason
        # the same call again is served by the cache and yields the same rows
        again, stats = STAGES[stage](frame_in, engine, SMALL)
        assert stats["llm"]["cache_hits"] == calls
        assert again.drop("cached").equals(out.drop("cached"))


@pytest.mark.llm
def test_engine_errors_become_rejected_rows():
    """A context too small for the prompt is a per-request error: rows say so, nothing raises."""
    from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine

    tiny = LlamaCppEngine(n_ctx=256)
    frame_in = input_frame(recording("concepts"), "concepts").head(2)
    out, stats = seed_concepts(frame_in, tiny, SMALL)
    assert out.height == 2 and stats["rejected"] == 2
    assert all(r.startswith("llm_error: prompt_too_long") for r in out["reject_reason"])


class DiesAfter:
    """The real backend, killed (an exception) after ``limit`` finished samples."""

    def __init__(self, engine, limit: int) -> None:
        self.engine, self.limit, self.model_id = engine, limit, engine.model_id
        self.samples = 0

    def generate_each(self, requests):
        for k, completion in self.engine.generate_each(requests):
            if self.samples == self.limit:
                raise RuntimeError("simulated crash")
            self.samples += 1
            yield k, completion


@pytest.mark.llm
def test_crash_mid_stage_then_rerun_repeats_no_finished_call(gemma, tmp_path):
    from amr_dagster.llm.cache import SQLiteCache
    from amr_dagster.llm.cached import CachedEngine

    doc = recording("responses")
    frame_in = input_frame(doc, "responses").head(3)
    config = GenerationConfig(n_samples=2, response_max_tokens=12, response_shots=2, chunk_size=2)
    cache_path = tmp_path / "llm_cache.sqlite"

    crashing = DiesAfter(gemma, limit=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        responses(frame_in, CachedEngine(crashing, SQLiteCache(cache_path)), config)
    assert crashing.samples == 3
    assert SQLiteCache(cache_path).count() == 3

    resumed = DiesAfter(gemma, limit=10**6)
    out, stats = responses(frame_in, CachedEngine(resumed, SQLiteCache(cache_path)), config)
    total = frame_in.height * config.n_samples
    assert resumed.samples == total - 3  # only the calls that never finished
    assert stats["llm"]["cache_hits"] == 3 and out.height == total

    idle = DiesAfter(gemma, limit=0)  # any backend call now would raise
    again, stats = responses(frame_in, CachedEngine(idle, SQLiteCache(cache_path)), config)
    assert stats["llm"]["cache_hits"] == total
    assert again.drop("cached").equals(out.drop("cached"))


def test_embedded_defaults_ask_for_easy_function_tasks_the_profile_restores_the_mix():
    config = GenerationConfig()
    assert (config.categories, config.difficulties, config.shot_difficulties) == (("function",), ("easy",), ("easy",))
    paper = load_profile("selfcodealign").build("generation")
    assert paper.categories == ("function", "function", "class", "program")
    assert paper.difficulties == ("easy", "medium", "hard") and paper.shot_difficulties == ()
