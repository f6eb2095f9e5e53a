"""Settings profiles: loading, precedence, refusal of unknown names, and the selfcodealign
profile's own few-shot library (every answer passes its tests, none is a benchmark problem)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from amr_dagster.dataset.export import ExportConfig
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.fewshot import library_named
from amr_dagster.generation.parsing import parse_response
from amr_dagster.generation.prompting import instruction_prompt, response_prompt, templates_named
from amr_dagster.profiles import UnknownProfile, known_profiles, load_profile
from amr_dagster.seeds.filters import FilterConfig
from tests.generation.test_fewshot import run_example

SCALIGN = load_profile("selfcodealign")
SCALIGN_LIBRARY = library_named(SCALIGN.sections["generation"]["fewshot_dir"])


def test_known_profiles_and_unknown_refused():
    assert known_profiles() == ["embedded", "selfcodealign"]
    with pytest.raises(UnknownProfile, match="known profiles: embedded, selfcodealign"):
        load_profile("selfcodealigned")


def test_embedded_is_todays_defaults():
    embedded = load_profile("embedded")
    assert embedded.build("generation") == GenerationConfig()
    assert embedded.build("filters") == FilterConfig()
    assert embedded.build("export") == ExportConfig()


def test_selfcodealign_holds_the_reference_settings():
    g = SCALIGN.build("generation")
    assert (g.response_shots, g.n_samples, g.response_temperature, g.response_max_tokens) == (1, 10, 0.7, 1536)
    assert (g.concept_shots, g.concepts_temperature) == (8, 0.7)
    assert (g.instruction_shots, g.instruction_paragraphs, g.max_instruction_words) == (8, True, 200)
    assert g.profile == "selfcodealign"
    assert SCALIGN.build("filters").judge_mode == "paper"
    export = SCALIGN.build("export")
    assert export.dedup_function_names and export.dedup_on_code_representation
    # I->R stops after the tests: the next example header ends the completion, one call.
    assert "\n## Example" in templates_named(g.templates_file)["responses"].stop
    assert not g.tests_call and not g.same_category_shots and not g.sibling_tests  # own tests only
    # the one departure, for small runs: up to 3 attempts per S->C / C->I row
    assert (g.concept_attempts, g.instruction_attempts) == (3, 3)


def test_explicit_non_default_values_win_over_the_profile():
    g = SCALIGN.build("generation", {"n_samples": 3, "response_max_tokens": GenerationConfig().response_max_tokens})
    assert g.n_samples == 3  # set away from the default: wins
    assert g.response_max_tokens == 1536  # equal to the default: taken as not set


def test_a_profile_file_with_an_unknown_field_is_refused(tmp_path):
    (tmp_path / "typo.yaml").write_text("name: typo\ngeneration:\n  n_sample: 10\n")
    with pytest.raises(ValueError, match="generation.n_sample"):
        load_profile("typo", tmp_path)


def test_cli_refuses_an_unknown_profile(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "amr_dagster.cli", "run", "--profile", "nope", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "unknown profile 'nope'; known profiles: embedded, selfcodealign" in done.stderr


def test_selfcodealign_library_covers_the_shots_it_needs():
    g = SCALIGN.build("generation")
    assert len(SCALIGN_LIBRARY) >= max(g.concept_shots, g.instruction_shots)
    assert {e.category for e in SCALIGN_LIBRARY.examples} == {"function", "class", "program"}
    assert all("\n\n" in e.instruction.strip() for e in SCALIGN_LIBRARY.examples)  # several paragraphs
    assert all("step by step" in e.response for e in SCALIGN_LIBRARY.examples)  # reasoning first
    assert all(len(e.instruction.split()) <= g.max_instruction_words for e in SCALIGN_LIBRARY.examples)


@pytest.mark.parametrize("example", SCALIGN_LIBRARY.examples, ids=lambda e: e.id)
def test_selfcodealign_answers_pass_their_own_tests_and_the_rules(example, tmp_path):
    done = run_example(example, tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) >= 2
    text = f"{example.response}\n### Tests\n{example.tests}\n"
    assert parse_response(text, "stop").reason is None
    docstrings = [n for n in ast.walk(ast.parse(example.seed)) if isinstance(n, ast.FunctionDef) and ast.get_docstring(n)]
    assert docstrings, "a seed is a documented function"


def test_selfcodealign_examples_are_not_benchmark_problems():
    from amr_dagster.seeds.decontamination import Decontaminator

    checker = Decontaminator.default()
    hits = [
        (e.id, f, checker.check(getattr(e, f)))
        for e in SCALIGN_LIBRARY.examples
        for f in ("seed", "instruction", "response", "tests")
        if checker.check(getattr(e, f))
    ]
    assert hits == []


def test_prompts_fit_the_embedded_context():
    """The longest I->R and C->I prompts plus their max_tokens fit llama.cpp's 8192-token context
    (counted with the embedded model's tokenizer: no row may be rejected for prompt length)."""
    from amr_dagster.llm.registry import EngineSpec

    g = SCALIGN.build("generation")
    templates = templates_named(g.templates_file)
    longest = max(SCALIGN_LIBRARY.examples, key=lambda e: len(e.response) + len(e.tests))
    response = response_prompt(templates, [longest], longest.instruction)
    by_length = sorted(SCALIGN_LIBRARY.examples, key=lambda e: -len(e.instruction))
    instruction = instruction_prompt(templates, by_length[: g.instruction_shots], ["a", "b"], "program", "hard")
    n_ctx = EngineSpec().n_ctx
    # ~4 characters per token for English and code; checked against the real tokenizer in the e2e run
    assert len(response) / 3 + g.response_max_tokens < n_ctx
    assert len(instruction) / 3 + g.instruction_max_tokens < n_ctx


def test_the_generation_resource_carries_the_profile():
    """The profile is a field of the generation resource (run config); stages see it applied."""
    from amr_dagster.cli import build_parser, run_config
    from amr_dagster.profiles import apply_profile
    from resources.generation import GenerationSettings

    assert apply_profile(GenerationSettings(profile="selfcodealign").to_core()).n_samples == 10
    assert apply_profile(GenerationSettings(profile="selfcodealign", n_samples=3).to_core()).n_samples == 3
    assert apply_profile(GenerationSettings().to_core()) == GenerationConfig()
    args = build_parser().parse_args(["run", "--profile", "selfcodealign"])
    assert run_config(args, [], {"generation"})["resources"]["generation"]["config"]["profile"] == "selfcodealign"
    with pytest.raises(UnknownProfile, match="known profiles"):
        apply_profile(GenerationSettings(profile="tiny").to_core())
