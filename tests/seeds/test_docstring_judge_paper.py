"""The paper's docstring judge (mode ``paper``): what it shows, how votes count, a real run.

Real texts: functions of this interpreter's standard library (their own docstrings), our
prompt file, and the embedded Gemma 3 270M for the end-to-end vote.
"""

from __future__ import annotations

import inspect
import textwrap

import polars as pl
import pytest

from amr_dagster.llm.base import Completion
from amr_dagster.llm.cache import MemoryCache
from amr_dagster.llm.cached import CachedEngine
from amr_dagster.seeds.docstring_judge import (
    NO,
    UNPARSED,
    YES,
    load_paper_prompt,
    make_judge,
    split_docstring,
    tally,
    vote_of,
)


def test_the_paper_judge_sees_the_code_and_the_docstring_apart():
    source = textwrap.dedent(inspect.getsource(textwrap.indent))  # a real stdlib function
    docstring, body = split_docstring(source)
    assert docstring == inspect.getdoc(textwrap.indent)
    assert docstring.splitlines()[0] not in body
    assert body.startswith("def indent(text, prefix, predicate=None):")
    assert "prefixed_lines" in body or "for line in" in body  # the body is there, comments kept


def test_a_function_without_docstring_shows_no_docstring():
    assert split_docstring("def f(x):\n    return x") == ("", "def f(x):\n    return x")


def test_prompt_file_is_versioned_balanced_and_each_example_has_a_docstring():
    prompt = load_paper_prompt()
    assert prompt.version.startswith("docstring-judge-paper-v")
    assert prompt.prefix.count("Answer: Yes") == prompt.prefix.count("Answer: No") >= 3
    assert prompt.prefix.count("### Docstring") == prompt.prefix.count("### Code")


@pytest.mark.parametrize(
    ("answer", "vote"),
    [(" Yes", YES), (" No.", NO), (" yes, yes", YES), (" No, no", NO), (" No, not yes", UNPARSED), (" Yes or no", UNPARSED), ("", UNPARSED), (" Nothing", UNPARSED)],
)
def test_one_answer_votes_by_its_yes_and_no_words(answer, vote):
    assert vote_of(answer) == vote


@pytest.mark.parametrize(
    ("votes", "verdict"),
    [([YES], YES), ([NO], NO), ([UNPARSED], NO), ([YES, NO], NO), ([YES, YES, NO], YES), ([YES, UNPARSED, UNPARSED], YES), ([NO, NO, YES], NO)],
)
def test_kept_only_when_yes_votes_outnumber_no_votes(votes, verdict):
    assert tally(votes) == verdict


class _Scripted:
    """Answers with fixed texts (parsing logic only: the real model is below)."""

    model_id = "scripted"

    def __init__(self, answers: list[str]) -> None:
        self.answers, self.seen = answers, []

    def generate(self, requests):
        out = []
        for request in requests:
            self.seen.append(request)
            out.append([Completion(text=a, finish_reason="stop", prompt_tokens=1, completion_tokens=1, sample_index=i) for i, a in enumerate(self.answers[: request.params.n])])
        return out


def test_votes_are_sampled_and_kept_in_the_raw_answer():
    engine = _Scripted([" Yes", " No", " Yes"])
    judge = make_judge(engine, mode="paper", votes=3, temperature=0.7)
    [(verdict, raw)] = judge([{"id": "a", "code": inspect.getsource(textwrap.dedent)}])
    assert (verdict, raw) == (YES, "Yes | No | Yes")
    params = engine.seen[0].params
    assert params.n == 3 and params.temperature == 0.7 and params.stop == ("\n",)
    assert "### Docstring\nRemove any common leading whitespace" in engine.seen[0].prompt
    single = make_judge(_Scripted([" No"]), mode="paper", votes=1)
    assert single([{"id": "b", "code": inspect.getsource(textwrap.dedent)}]) == [(NO, "No")]


def test_both_judges_report_progress_as_the_docstring_judge_task():
    """A paper-judge run on a CPU spends minutes on its prompts: it reports like the other judge."""
    from amr_dagster import progress

    for mode in ("signature", "paper"):
        events: list = []
        judge = make_judge(_Scripted([" Yes"]), mode=mode, votes=1)
        with progress.sink(events.append):
            judge([{"id": "a", "code": inspect.getsource(textwrap.dedent)}])
        assert {e.name for e in events} == {"docstring_judge"} and events[-1].finished, mode


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="signature, paper"):
        make_judge(_Scripted([]), mode="strict")


@pytest.mark.llm
def test_real_paper_judge_on_the_embedded_model(tmp_path):
    from amr_dagster.llm.registry import EngineSpec, shared_engine
    from amr_dagster.seeds.filters import FilterConfig, filter_seeds

    engine = CachedEngine(shared_engine(EngineSpec(backend="llama_cpp", n_ctx=2048, n_threads=1)), MemoryCache())
    judge = make_judge(engine, mode="paper", votes=3)
    sources = [textwrap.dedent(inspect.getsource(f)) for f in (textwrap.dedent, textwrap.indent)]
    rows = [{"id": f"s{i}", "code": code} for i, code in enumerate(sources)]
    results = judge(rows)
    assert len(results) == 2
    for verdict, raw in results:
        votes = raw.split(" | ")
        assert len(votes) == 3 and verdict == tally([vote_of(v) for v in votes])
    assert engine.usage.cache_misses == 6  # 2 functions x 3 votes, each sample cached on its own
    assert judge(rows) == results and engine.usage.cache_hits == 6
    frame = pl.DataFrame({
        "id": ["s0", "s1"], "name": ["dedent", "indent"], "docstring": ["d", "i"], "code": sources,
        "status": ["accepted", "accepted"], "reject_reason": [None, None],
    }, schema_overrides={"reject_reason": pl.String})
    out, _ = filter_seeds(frame, FilterConfig(typecheck=False, judge_mode="paper"), judge=judge)
    for verdict, reason in zip(out.get_column("judge_verdict").to_list(), out.get_column("reject_reason").to_list()):
        assert (reason is None) == (verdict == YES)
