"""Evolution: prompt sections and the ablation switches, retrieval merging, recorded real outputs.

The ablation tests compare prompts section by section: switching decomposition or retrieval
off must remove exactly its own section (in the one-shot example and in the target) and change
nothing else, neither the rest of the text nor the sampling parameters.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from importlib import resources
from itertools import product

import polars as pl
import pytest
import yaml

from amr_dagster.evol.config import EvolConfig, evol_prompts, prompt_version
from amr_dagster.evol.decomposition import decomposed_modules
from amr_dagster.evol.direct import choose_direct
from amr_dagster.evol.evolution import (
    evolution_request,
    evolution_sections,
    evolve_responses,
    example_sections,
    library_per_instruction,
    module_stub,
)
from amr_dagster.generation.parsing import parse_response
from tests.evol.test_evol_decomposition import FixedEngine, ReplayEngine, executed, load, sample

CONFIGS = [EvolConfig(use_decomposition=d, use_retrieval=r) for d, r in product([True, False], repeat=2)]
STUBS = [module_stub("parse(text: str) -> list[int]", "Numbers in a text."), module_stub("total(xs: list[int]) -> int", "Their sum.")]
LIBRARY = [
    {"entry_id": "e1", "similarity": 0.83, "code": "def ints(s: str) -> list[int]:\n    return [int(t) for t in s.split()]"},
    {"entry_id": "e2", "similarity": 0.35, "code": "def mean(xs: list[float]) -> float:\n    return sum(xs) / len(xs)"},
]


def dropped(config: EvolConfig) -> set[str]:
    return ({"modules"} if not config.use_decomposition else set()) | ({"library"} if not config.use_retrieval else set())


# -- the ablation switches -----------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"decomp={c.use_decomposition},retr={c.use_retrieval}")
def test_switches_drop_their_own_section_and_nothing_else(config):
    full = EvolConfig()
    target_full = evolution_sections("Sum the numbers in a text.", "def f(t):\n    return 0", STUBS, LIBRARY, full)
    target = evolution_sections("Sum the numbers in a text.", "def f(t):\n    return 0", STUBS, LIBRARY, config)
    assert [n for n, _ in target_full] == ["instruction", "first_solution", "modules", "library"]
    assert target == [s for s in target_full if s[0] not in dropped(config)]
    example_full, answer_full = example_sections(full)
    example, answer = example_sections(config)
    assert example == [s for s in example_full if s[0] not in dropped(config)]
    assert answer == answer_full

    # The whole prompt: removing the dropped sections' text from the full prompt gives it exactly.
    req_full = evolution_request("Sum the numbers in a text.", "def f(t):\n    return 0", STUBS, LIBRARY, full, tag="t")
    req = evolution_request("Sum the numbers in a text.", "def f(t):\n    return 0", STUBS, LIBRARY, config, tag="t")
    expected = req_full.prompt
    for name, text in example_full + target_full:
        if name in dropped(config):
            assert expected.count(text + "\n") == 1
            expected = expected.replace(text + "\n", "", 1)
    assert req.prompt == expected
    assert req.params == req_full.params and req.tag == req_full.tag

    chat_full = evolution_request("Sum.", "def f(t): ...", STUBS, LIBRARY, replace(full, chat=True), tag="t")
    chat = evolution_request("Sum.", "def f(t): ...", STUBS, LIBRARY, replace(config, chat=True), tag="t")
    assert [r for r, _ in chat.messages] == [r for r, _ in chat_full.messages] == ["system", "user", "assistant", "user"]
    assert chat.messages[0] == chat_full.messages[0] and chat.messages[2] == chat_full.messages[2]
    assert chat.params == chat_full.params


def test_stage_under_each_switch_differs_only_in_what_was_shown():
    rows = [sample("a1", "A", "failed", 1, code="def f(x):\n    return x")]
    direct = choose_direct(executed(rows), 0)
    modules, _ = decomposed_modules(executed(rows), FixedEngine(['def g(x: int) -> int:\n    """G."""\n']), EvolConfig())
    module_id = modules["module_id"][0]
    retrieved = pl.DataFrame(
        [{"query_id": module_id, "retrieved": [{**LIBRARY[0], "name": "ints", "signature": "ints(s: str) -> list[int]", "description": "d"}]}]
    )
    frames = {}
    for config in CONFIGS:
        engine = FixedEngine(["ok"])
        frame, _ = evolve_responses(direct, modules, retrieved, engine, config, library_snapshot="snap-1")
        [request] = engine.requests
        prompt = request.prompt
        assert ("### Function modules" in prompt) == config.use_decomposition
        assert ("### Library functions" in prompt) == config.use_retrieval
        assert ("# similarity 0.83" in prompt) == config.use_retrieval
        frames[(config.use_decomposition, config.use_retrieval)] = frame.row(0, named=True)
    full = frames[(True, True)]
    assert full["retrieved_module_ids"] == ["e1"] and full["module_ids"] == [module_id]
    assert full["library_snapshot"] == "snap-1"
    assert frames[(True, False)]["retrieved_module_ids"] == [] and frames[(True, False)]["library_snapshot"] is None
    assert frames[(False, True)]["module_ids"] == []
    # The answer "ok" is the same text in every arm, so everything but what was shown is equal.
    shown = {"module_ids", "retrieved_module_ids", "retrieved_similarities", "library_snapshot", "use_decomposition", "use_retrieval"}
    for row in frames.values():
        assert {k: v for k, v in row.items() if k not in shown} == {k: v for k, v in full.items() if k not in shown}


# -- the answer layout and the example -----------------------------------------------------------


def test_answer_layout_is_the_selfcodealign_response_layout():
    scalign = yaml.safe_load(resources.files("amr_dagster").joinpath("prompts/selfcodealign.yaml").read_text())
    ours = evol_prompts()["evolution"]
    assert scalign["responses"]["example"].rstrip("\n").endswith(ours["answer"])
    assert scalign["responses"]["query"].endswith(ours["answer_open"])
    assert set(ours["stop"]) == set(scalign["responses"]["stop"])


def test_example_answer_parses_and_passes_its_own_tests(tmp_path):
    _, answer = example_sections(EvolConfig())
    parsed = parse_response(answer[len(evol_prompts()["evolution"]["answer_open"]):], "stop")
    assert parsed.reason is None
    script = tmp_path / "check.py"
    script.write_text(parsed.code + "\n\n" + parsed.tests + "\n\nfor _n, _f in list(globals().items()):\n"
                      "    if _n.startswith('test_'):\n        _f()\nprint('ok')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
    # ... and the example's first solution really fails them (the example shows a real fix).
    first = evol_prompts()["evolution"]["example"]["code"]
    script.write_text(first + "\n\n" + parsed.tests + "\n\nfor _n, _f in list(globals().items()):\n"
                      "    if _n.startswith('test_'):\n        _f()\n")
    assert subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60).returncode != 0


def test_copying_the_example_answer_is_rejected():
    _, answer = example_sections(EvolConfig())
    engine = FixedEngine([answer[len("### Response\n"):]])
    rows = [sample("a1", "A", "failed", 0, code="def f(x):\n    return x")]
    frame, _ = evolve_responses(executed(rows), None, None, engine, EvolConfig())
    assert frame["reject_reason"][0] == "copied_fewshot: amr-evol-example"


# -- retrieval merging -----------------------------------------------------------------------------


def test_library_entries_are_merged_per_instruction_best_first():
    def entry(eid, sim):
        return {"entry_id": eid, "similarity": sim, "name": eid, "signature": f"{eid}()", "description": "", "code": ""}

    retrieved = pl.DataFrame(
        [
            {"query_id": "m1", "retrieved": [entry("x", 0.5), entry("y", 0.9), entry("low", 0.1)]},
            {"query_id": "m2", "retrieved": [entry("x", 0.7), entry("z", 0.6)]},
            {"query_id": "other", "retrieved": [entry("w", 0.99)]},
        ]
    )
    owner = {"m1": "A", "m2": "A"}
    got = library_per_instruction(retrieved, owner, EvolConfig(max_retrieved=3, min_similarity=0.2))
    assert [(e["entry_id"], e["similarity"]) for e in got["A"]] == [("y", 0.9), ("x", 0.7), ("z", 0.6)]
    assert list(got) == ["A"]
    assert [e["entry_id"] for e in library_per_instruction(retrieved, owner, EvolConfig(max_retrieved=1))["A"]] == ["y"]


# -- recorded outputs of the real model ------------------------------------------------------------


def test_recorded_evolutions_replay_through_the_stage():
    decomposition = load("evol_decomposition")
    evolution = load("evol_evolution")
    config = EvolConfig(**evolution["meta"]["config"])
    modules, _ = decomposed_modules(
        executed(decomposition["executed"]), ReplayEngine(decomposition["records"], "replay"), config
    )
    direct = choose_direct(executed(evolution["executed"]), config.global_seed)
    retrieved = pl.DataFrame(evolution["retrieved"])
    engine = ReplayEngine(evolution["records"], evolution["meta"]["model_id"])
    snapshot = evolution["meta"]["library_snapshot"]
    frame, stats = evolve_responses(direct, modules, retrieved, engine, config, library_snapshot=snapshot)
    assert engine.served == len(evolution["records"]) == direct.height == frame.height

    records = {r["tag"]: r for r in evolution["records"]}
    for row in frame.iter_rows(named=True):
        record = records[row["parent_id"]]
        assert row["raw_output"] == record["text"] and row["library_snapshot"] == snapshot
        assert row["prompt_version"] == prompt_version()
        assert 0 < len(row["retrieved_module_ids"]) <= config.max_retrieved
        assert row["retrieved_similarities"] == sorted(row["retrieved_similarities"], reverse=True)
        for sim in row["retrieved_similarities"]:
            assert f"# similarity {sim:.2f}" in record["prompt"]
        if row["status"] == "accepted":
            assert row["code"] in record["text"] and row["tests"] in record["text"] and "assert" in row["tests"]
        else:
            assert row["reject_reason"] and row["code"] is None or row["reject_reason"].startswith("syntax_error")
    print(f"\nevol_evolution: {stats['accepted']}/{stats['evolution_requests']} evolved responses parsed "
          f"(parse rate {stats['evolution_parse_rate']}), reasons {stats['rejected_by_reason']}, "
          f"unchanged {int(frame['unchanged'].fill_null(False).sum())}")


# -- the real engine -------------------------------------------------------------------------------


@pytest.mark.llm
@pytest.mark.slow
def test_real_model_decomposes_and_evolves_one_response():
    pytest.importorskip("llama_cpp")
    from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine

    code = "def count_vowels(text):\n    n = 0\n    for ch in text.lower():\n        if ch in 'aeiou':\n            n += 1\n    return n"
    rows = [{**sample("v1", "V", "passed", 2, 2, code=code), "instruction": "Count the vowels in a string."}]
    engine = LlamaCppEngine(n_ctx=4096, n_threads=2)
    config = EvolConfig(decomposition_max_tokens=96, evolution_max_tokens=160)
    modules, mstats = decomposed_modules(executed(rows), engine, config)
    assert modules.height >= 1 and set(modules["parent_id"]) == {"v1"}
    assert mstats["accepted"] + mstats["rejected"] == modules.height
    frame, stats = evolve_responses(choose_direct(executed(rows), 0), modules, None, engine, config)
    assert frame.height == 1 and frame["raw_output"][0] is not None
    assert frame["completion_tokens"][0] <= 160 and frame["model_id"][0] == engine.model_id
    assert (frame["status"][0] == "accepted") == (frame["reject_reason"][0] is None)
