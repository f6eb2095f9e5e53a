"""Decomposition: choosing the direct response, the prompt, and parsing real teacher outputs.

The parsing tests replay outputs recorded from the embedded Gemma 3 270M
(``scripts/record_evol_fixtures.py`` -> ``tests/fixtures/recorded/evol_decomposition*.json``)
through the real stage function: the engine answers only prompts it has a recording for, so a
changed prompt fails here until the fixtures are re-recorded.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from amr_dagster.evol.config import EvolConfig, evol_prompts, prompt_version
from amr_dagster.evol.decomposition import decomposed_modules, decomposition_request, retrieval_queries
from amr_dagster.evol.direct import choose_direct
from amr_dagster.evol.stubs import parse_modules, stub_block
from amr_dagster.llm.base import Completion, LLMRequest
from amr_dagster.outcomes import summarize

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
EXECUTED_SCHEMA = {
    "id": pl.String, "parent_id": pl.String, "instruction": pl.String, "response": pl.String,
    "code": pl.String, "tests": pl.String, "sandbox_status": pl.String, "tests_passed": pl.Int64, "tests_run": pl.Int64,
}


class ReplayEngine:
    """Serves recorded completions by exact request; an unknown request is a test failure."""

    def __init__(self, records: list[dict], model_id: str) -> None:
        self.model_id = model_id
        self.by_request = {self.key(r["prompt"], r["messages"], r["params"]): r for r in records}
        self.served = 0

    @staticmethod
    def key(prompt, messages, params) -> str:
        params = dict(params)
        params["stop"] = list(params["stop"])
        return json.dumps([prompt, [list(m) for m in messages] if messages else None, params], sort_keys=True)

    def generate(self, requests: list[LLMRequest]) -> list[list[Completion]]:
        out = []
        for r in requests:
            params = {k: getattr(r.params, k) for k in ("n", "temperature", "top_p", "max_tokens", "stop", "seed")}
            key = self.key(r.prompt, r.messages, params)
            assert key in self.by_request, f"no recording for request {r.tag}: prompt changed? re-record fixtures"
            rec = self.by_request[key]
            self.served += 1
            out.append([Completion(rec["text"], rec["finish_reason"], rec["prompt_tokens"], rec["completion_tokens"], 0, error=rec["error"])])
        return out


class FixedEngine:
    """Answers every request with the same text (for parsing-logic tests only)."""

    model_id = "fixed"

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.requests: list[LLMRequest] = []

    def generate(self, requests):
        self.requests.extend(requests)
        return [[Completion(self.texts[i % len(self.texts)], "stop", 1, 1, 0)] for i, _ in enumerate(requests)]


def load(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text())


def executed(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=EXECUTED_SCHEMA)


def sample(sid: str, iid: str, verdict: str | None, passed: int = 0, run: int = 3, code: str | None = "def f(): pass") -> dict:
    return {
        "id": sid, "parent_id": iid, "instruction": f"task {iid}", "response": "r", "code": code, "tests": "t",
        "sandbox_status": verdict, "tests_passed": passed, "tests_run": run,
    }


# -- choosing the direct response --------------------------------------------------------------


def test_direct_is_a_passing_sample_chosen_by_seed_not_by_row_order():
    rows = [sample(f"s{i}", "I", "passed", 3) for i in range(5)] + [sample("bad", "I", "failed", 2)]
    picks = set()
    for seed in range(15):
        a = choose_direct(executed(rows), seed).row(0, named=True)
        b = choose_direct(executed(rows[::-1]), seed).row(0, named=True)
        assert a["direct_id"] == b["direct_id"] and a["direct_passed"]
        assert (a["samples"], a["passing_samples"]) == (6, 5)
        picks.add(a["direct_id"])
    assert len(picks) > 1 and "bad" not in picks


def test_best_parsed_when_nothing_passes():
    rows = [
        sample("timeout", "I", "timeout", 0, 0),
        sample("two_of_five", "I", "failed", 2, 5),
        sample("two_of_three", "I", "failed", 2, 3),
        sample("never_ran", "I", None, 0, 0),
        sample("no_code", "J", None, 0, 0, code=None),
    ]
    frame = choose_direct(executed(rows), 0)
    got = {r["instruction_id"]: r for r in frame.iter_rows(named=True)}
    assert got["I"]["direct_id"] == "two_of_three" and not got["I"]["direct_passed"]
    assert got["J"]["direct_id"] is None
    assert got["J"]["reject_reason"] == "no_direct_response: none of 1 samples has code"
    timeout_vs_unrun = choose_direct(executed([rows[0], rows[3]]), 0)
    assert timeout_vs_unrun["direct_id"][0] == "timeout"


# -- the prompt --------------------------------------------------------------------------------


def test_completion_prompt_ends_inside_an_open_fence_and_chat_has_the_same_parts():
    config = EvolConfig()
    req = decomposition_request("Add one to x.", "def f(x):\n    return x + 1", config, tag="r")
    p = evol_prompts()["decomposition"]
    assert req.prompt.endswith("### Function modules\n```python\n")
    assert req.prompt.count("### Instruction") == 2 and "def f(x):\n    return x + 1" in req.prompt
    assert set(req.params.stop) == set(p["stop"]) and req.params.max_tokens == config.decomposition_max_tokens
    chat = decomposition_request("Add one to x.", "def f(x):\n    return x + 1", replace(config, chat=True), tag="r")
    roles = [role for role, _ in chat.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert chat.messages[0][1] == p["preamble"] and chat.messages[2][1].startswith("```python\n")
    assert chat.messages[3][1] in req.prompt and chat.messages[1][1] in req.prompt
    assert chat.params == req.params
    assert decomposition_request("a", "b", config, tag="other").params.seed != req.params.seed


def test_one_shot_example_parses_into_typed_modules():
    modules, failure = parse_modules(evol_prompts()["decomposition"]["example"]["modules"])
    assert failure is None and len(modules) >= 2
    assert all(m.typed and m.description for m in modules)
    # The example itself counts as a copy when a model repeats it ...
    assert all(m.reason and m.reason.startswith("copied_example") for m in modules)
    # ... unless the solution being decomposed really uses that name.
    own = parse_modules(evol_prompts()["decomposition"]["example"]["modules"], solution_code="x = stock_value(items)")[0]
    assert [m.name for m in own if m.reason is None] == ["stock_value"]


# -- parsing logic (synthetic texts: each branch once) -----------------------------------------


def test_docstring_sections_and_signature_normalization():
    text = '''def  merge( a : dict[str,int],b:dict[str, int] ,*, keep: bool=True)->dict[str,int]:
    """Merge two count maps,
    summing shared keys.

    Args:
        a: the first map,
            which may be empty.
        b (dict): the second map.

    Returns:
        A new map.
    """
'''
    [m], failure = parse_modules(text)
    assert failure is None and m.reason is None and m.typed
    assert m.signature == "merge(a: dict[str, int], b: dict[str, int], *, keep: bool=True) -> dict[str, int]"
    assert m.description == "Merge two count maps, summing shared keys."
    assert m.parameters == [
        {"name": "a", "type": "dict[str, int]", "description": "the first map, which may be empty."},
        {"name": "b", "type": "dict[str, int]", "description": "the second map."},
        {"name": "keep", "type": "bool", "description": ""},
    ]
    assert (m.return_type, m.returns) == ("dict[str, int]", "A new map.")


def test_each_broken_stub_gets_its_own_reason():
    text = (
        "def ok(x: int) -> int:\n    \"\"\"Fine.\"\"\"\n\n"
        "def nosig:\n    pass\n\n"
        "def bad(x: int -> int:\n    \"\"\"Broken.\"\"\"\n\n"
        "def nodoc(x: int) -> int:\n    return x\n\n"
        "def ok(y: str) -> str:\n    \"\"\"Same name again.\"\"\"\n\n"
        "def untyped(x):\n    \"\"\"No annotations.\"\"\"\n\n"
        "def cut(x: int) -> int:\n    \"\"\"Cut off mid docstr"
    )
    modules, failure = parse_modules(text)
    assert failure is None
    assert [(m.name, m.reason) for m in modules] == [
        ("ok", None),
        ("nosig", "missing_signature: def nosig:"),
        ("bad", "invalid_signature: def bad(x: int -> int:"),
        ("nodoc", "missing_description"),
        ("ok", "duplicate_module_name: ok"),
        ("untyped", None),
        ("cut", None),
    ]
    assert modules[5].typed is False and modules[6].description == "Cut off mid docstr"
    strict = parse_modules(text, EvolConfig(require_typed_signature=True))[0]
    assert strict[5].reason == "untyped_signature: x, return"


def test_nested_defs_stay_inside_a_broken_outer_stub():
    text = 'def outer(x: int) -> int:\n    """Outer."""\n    def inner(y):\n        return y\n    return inner(x\n\ndef after(z: str) -> str:\n    """After."""\n'
    modules, failure = parse_modules(text)
    assert failure is None
    assert [(m.name, m.reason, m.description) for m in modules] == [("outer", None, "Outer."), ("after", None, "After.")]


def test_outputs_without_stubs_and_fenced_chat_answers():
    assert parse_modules("") == ([], "unparsed_output: empty output")
    assert parse_modules("I cannot help with that.") == ([], "unparsed_output: no def stub found")
    chat = "Here are the modules:\n```python\ndef a(x: int) -> int:\n    \"\"\"A.\"\"\"\n```\nDone."
    assert stub_block(chat) == 'def a(x: int) -> int:\n    """A."""'
    completion = 'def a(x: int) -> int:\n    """A."""\n```\n\n### Instruction\nmore'
    assert stub_block(completion) == 'def a(x: int) -> int:\n    """A."""'
    many = "\n".join(f'def f{i}(x: int) -> int:\n    """F{i}."""' for i in range(10))
    modules, _ = parse_modules(many, EvolConfig(max_modules=3))
    assert [m.reason for m in modules].count(None) == 3
    assert modules[3].reason == "too_many_modules: more than 3"


def test_stage_accounts_for_every_instruction_and_keeps_ids_unique():
    rows = [sample("a1", "A", "passed", 3), sample("b1", "B", "failed", 1), sample("c1", "C", None, code="")]
    text = 'def g(x: int) -> int:\n    """G."""\n\ndef g(x: int) -> int:\n    """G again."""\n'
    engine = FixedEngine([text])
    frame, stats = decomposed_modules(executed(rows), engine, EvolConfig())
    assert len(engine.requests) == 2  # C has no code: no request, one rejected row
    assert set(frame["instruction_id"]) == {"A", "B", "C"}
    assert frame["module_id"].n_unique() == frame.height
    c = frame.filter(pl.col("instruction_id") == "C").row(0, named=True)
    assert c["reject_reason"].startswith("no_direct_response") and c["parent_id"] is None
    assert stats["decomposition_parse_rate"] == 1.0 and stats["accepted"] == 2
    assert summarize(frame)["rejected_by_reason"] == {
        "duplicate_module_name: g": 2,
        "no_direct_response: none of 1 samples has code": 1,
    }
    assert set(frame["prompt_version"]) == {prompt_version()}


def test_retrieval_queries_follow_the_decomposition_switch():
    rows = [sample("a1", "A", "passed", 3), sample("b1", "B", "passed", 3)]
    direct = choose_direct(executed(rows), 0)
    engine = FixedEngine(['def g(x: int) -> int:\n    """Grow x."""\n', "nothing"])
    modules, _ = decomposed_modules(executed(rows), engine, EvolConfig())
    with_modules = retrieval_queries(direct, modules, EvolConfig())
    by_instruction = {r["instruction_id"]: r for r in with_modules.iter_rows(named=True)}
    a_module = modules.filter(pl.col("instruction_id") == "A")["module_id"][0]
    assert by_instruction["A"]["query_id"] == a_module and "Grow x." in by_instruction["A"]["text"]
    assert by_instruction["B"]["query_id"] == "b1"  # undecomposable: falls back to the instruction
    without = retrieval_queries(direct, modules, EvolConfig(use_decomposition=False))
    assert sorted(without["query_id"]) == ["a1", "b1"]
    assert all(t.startswith("task ") for t in without["text"])


# -- recorded outputs of the real model --------------------------------------------------------


def _independent_def_count(text: str) -> int:
    """Outermost def lines of the stub block, counted without the parser (the tests' oracle)."""
    indents = [len(m.group(1)) for m in re.finditer(r"^([ \t]*)(?:async[ \t]+)?def[ \t]", stub_block(text), flags=re.M)]
    return indents.count(min(indents)) if indents else 0


@pytest.mark.parametrize("fixture", ["evol_decomposition", "evol_decomposition_chat"])
def test_recorded_decompositions_replay_through_the_stage(fixture):
    data = load(fixture)
    config = EvolConfig(**data["meta"]["config"])
    engine = ReplayEngine(data["records"], data["meta"]["model_id"])
    frame, stats = decomposed_modules(executed(data["executed"]), engine, config)
    assert engine.served == len(data["records"]) == len(data["executed"])

    texts = {r["tag"]: r["text"] for r in data["records"]}
    assert set(frame["parent_id"]) == set(texts)  # every chosen response accounted for
    assert frame["module_id"].n_unique() == frame.height
    for parent, text in texts.items():
        rows = frame.filter(pl.col("parent_id") == parent)
        defs = _independent_def_count(text)
        if defs == 0:
            assert rows.height == 1 and rows["reject_reason"][0].startswith("unparsed_output")
            assert rows["raw_output"][0] == text
            continue
        assert rows.height == defs
        for m in rows.filter(pl.col("status") == "accepted").iter_rows(named=True):
            assert f"def {m['name']}" in text
            ast.parse(f"def {m['signature']}: ...")
            assert m["description"] and m["description"].split()[0] in text
    print(f"\n{fixture}: {stats['responses_decomposed']}/{stats['direct_chosen']} responses decomposed "
          f"(parse rate {stats['decomposition_parse_rate']}), modules typed {stats['modules_typed_rate']}, "
          f"reasons {stats['rejected_by_reason']}")
