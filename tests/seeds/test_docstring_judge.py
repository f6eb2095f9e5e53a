"""The docstring judge: prompt file, parsing, and real judging on the embedded model."""

from __future__ import annotations

import polars as pl
import pytest

from amr_dagster.seeds.docstring_judge import (
    NO,
    UNPARSED,
    YES,
    judge_prompt,
    load_prompt,
    make_judge,
    parse_verdict,
    signature_and_docstring,
)
from amr_dagster.llm.cache import MemoryCache
from amr_dagster.llm.cached import CachedEngine

GOOD = '''def rotate(items, k):
    """Return items rotated left by k positions (k may exceed len(items)); an empty list stays empty."""
    if not items:
        return []
    k %= len(items)
    return items[k:] + items[:k]
'''
VAGUE = '''def run(data):
    """Run."""
    total = 0
    for x in data:
        total += x * x
    return total
'''


def test_prompt_file_is_versioned_and_balanced() -> None:
    prompt = load_prompt()
    assert prompt.version.startswith("docstring-judge-v")
    assert prompt.prefix.count("Answer: yes") == prompt.prefix.count("Answer: no") >= 3


def test_prompt_file_is_validated(tmp_path) -> None:
    bad = tmp_path / "judge.yaml"
    bad.write_text("version: x\ninstruction: hi\nexamples:\n  - code: 'def f(): pass'\n    answer: maybe\n")
    with pytest.raises(ValueError, match="examples\\[0\\]"):
        load_prompt(bad)


def test_the_judge_sees_signature_and_docstring_but_not_the_body() -> None:
    shown = signature_and_docstring(GOOD)
    assert shown.startswith("def rotate(items, k):") and shown.endswith('empty list stays empty."""')
    assert "k %=" not in shown
    prompt = judge_prompt({"code": GOOD})
    assert prompt.startswith(load_prompt().prefix)  # the shared prefix comes first, unchanged
    assert prompt.endswith("```\nAnswer:")
    # Unparsable code falls back to its first lines rather than failing.
    assert signature_and_docstring("def broken(:\n    pass") == "def broken(:\n    pass"


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [(" yes", YES), (" Yes.", YES), ("NO", NO), (" no\n", NO), ("", UNPARSED), (" maybe", UNPARSED), (" yesterday", UNPARSED), ("  \n", UNPARSED)],
)
def test_parse_verdict(answer: str, verdict: str) -> None:
    assert parse_verdict(answer) == verdict


@pytest.mark.llm
def test_real_judge_on_the_embedded_model_and_through_filter_seeds(tmp_path) -> None:
    from amr_dagster.seeds.filters import FilterConfig, filter_seeds
    from amr_dagster.llm.registry import EngineSpec, shared_engine

    engine = CachedEngine(shared_engine(EngineSpec(backend="llama_cpp", n_ctx=2048, n_threads=1)), MemoryCache())
    judge = make_judge(engine)
    rows = [{"id": "good", "name": "rotate", "code": GOOD}, {"id": "vague", "name": "run", "code": VAGUE}]
    results = judge(rows)
    assert len(results) == 2
    for verdict, raw in results:
        assert verdict in (YES, NO, UNPARSED) and verdict == parse_verdict(raw)
    assert engine.usage.cache_misses == 2 and engine.usage.completion_tokens <= 2 * 3
    assert judge(rows) == results and engine.usage.cache_hits == 2  # a rerun costs nothing

    # Plugged into the seed filters, the verdict and the raw answer are kept on every row.
    frame = pl.DataFrame({
        "id": ["good", "vague"],
        "name": ["rotate", "run"],
        "docstring": ["Return items rotated left by k positions.", "Run."],
        "code": [GOOD, VAGUE],
        "status": ["accepted", "accepted"],
        "reject_reason": [None, None],
    }, schema_overrides={"reject_reason": pl.String})
    try:
        out, _ = filter_seeds(frame, FilterConfig(typecheck=False), judge=judge)
    except (KeyError, pl.exceptions.ColumnNotFoundError) as missing:
        pytest.fail(f"filter_seeds needs more seed columns than this test builds: {missing}")
    assert out.get_column("judge_answer").to_list() == [raw for _, raw in results]
    for verdict, reason in zip(out.get_column("judge_verdict").to_list(), out.get_column("reject_reason").to_list()):
        assert (reason is None) == (verdict == YES)
