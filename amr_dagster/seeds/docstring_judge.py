"""The docstring-quality judge of ``filtered_seeds``: a few-shot yes/no question to the generator.

SelfCodeAlign keeps only seeds whose docstring lets the base model understand the function.
We ask, completion style, whether the function could be re-implemented from its signature and
docstring alone, showing exactly that (the body is left out). The prompt is data (``prompts/docstring_judge.yaml``, versioned): a fixed
instruction and examples form a prefix shared by every row, so llama.cpp evaluates it once per
batch and each row costs only its own code plus a couple of generated tokens.

``make_judge(engine)`` returns the ``DocstringJudge`` that ``filters.filter_seeds`` takes: rows
(dicts with ``name``, ``docstring``, ``code``) in, ``(verdict, raw answer)`` out, verdict
``"yes"``, ``"no"`` or ``"unparsed"``. A per-row engine error is kept as ``"unparsed"`` with the
error in the raw answer; an unavailable engine raises (see ``llm.base``).

Two modes (``FilterConfig.judge_mode``):

- ``signature`` (the default, tuned for the embedded 270M model): signature + docstring only.
  It cannot tell a docstring that lies about the code.
- ``paper`` (SelfCodeAlign's judge, ``prompts/docstring_judge_paper.yaml``): the code with its
  docstring taken out, and the docstring beside it; the question is whether the docstring
  suffices to re-implement the code and matches it. ``votes`` answers are sampled per function
  (one greedy answer when ``votes`` is 1, as the reference does); each answer votes by its
  count of "yes" against "no" words, and the function is kept only when yes-votes outnumber
  no-votes (a tie, or no readable vote, is a no, the reference's default). The raw answer
  column keeps every vote, separated by `` | ``.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import yaml

from amr_dagster.generation.calls import generate_tracked
from amr_dagster.llm.base import LLMEngine, LLMRequest, SamplingParams

PROMPT_FILE = Path(__file__).resolve().parent.parent / "prompts" / "docstring_judge.yaml"
PAPER_PROMPT_FILE = PROMPT_FILE.with_name("docstring_judge_paper.yaml")
MODES = ("signature", "paper")
YES, NO, UNPARSED = "yes", "no", "unparsed"
MAX_CODE_LINES = 40
_FIRST_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class JudgePrompt:
    version: str
    prefix: str  # instruction + examples: identical for every row


def signature_and_docstring(code: str, max_lines: int = MAX_CODE_LINES) -> str:
    """What the judge sees: the ``def`` line(s) and the docstring, without the body.

    Falls back to the first ``max_lines`` lines when the code does not parse or has no
    docstring (such rows rarely get here: earlier filters reject them).
    """
    code = textwrap.dedent(code or "").strip()
    lines = code.splitlines()
    try:
        tree = ast.parse(code)
    except SyntaxError:
        tree = None
    if tree and tree.body and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        func = tree.body[0]
        first = func.body[0] if func.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            lines = lines[func.lineno - 1 : first.end_lineno]
    return "\n".join(lines[:max_lines] + (["    ..."] if len(lines) > max_lines else []))


def _block(code: str) -> str:
    return f"### Function\n```python\n{signature_and_docstring(code)}\n```\nAnswer:"


def _read_prompt_file(path: str | Path) -> tuple[str, str, list[dict]]:
    """(version, instruction, examples) of a judge prompt file; all three are required."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    version, instruction, examples = data.get("version"), data.get("instruction"), data.get("examples")
    if not version or not instruction or not examples:
        raise ValueError(f"{path}: needs version, instruction and examples")
    return str(version), instruction, examples


@lru_cache(maxsize=4)
def load_prompt(path: str | Path = PROMPT_FILE) -> JudgePrompt:
    """Parse and check the prompt file (a version, an instruction, yes/no examples)."""
    version, instruction, examples = _read_prompt_file(path)
    shots = []
    for i, example in enumerate(examples):
        if example.get("answer") not in (YES, NO) or not example.get("code"):
            raise ValueError(f"{path}: examples[{i}] needs code and an answer of yes or no")
        shots.append(f"{_block(example['code'])} {example['answer']}\n\n")
    return JudgePrompt(version=str(version), prefix=instruction.strip() + "\n\n" + "".join(shots))


def judge_prompt(row: dict, prompt: JudgePrompt | None = None, max_code_lines: int = MAX_CODE_LINES) -> str:
    """The full prompt for one seed row: the shared prefix, then its signature and docstring."""
    prompt = prompt or load_prompt()
    return prompt.prefix + f"### Function\n```python\n{signature_and_docstring(row.get('code') or '', max_code_lines)}\n```\nAnswer:"


def parse_verdict(answer: str) -> str:
    """First word of the answer: yes / no (any case), anything else is unparsed."""
    match = _FIRST_WORD.search(answer or "")
    word = match.group(0).lower() if match else ""
    return word if word in (YES, NO) else UNPARSED


def make_judge(
    engine: LLMEngine,
    *,
    mode: str = "signature",
    votes: int = 1,
    temperature: float = 0.7,
    prompt_path: str | Path | None = None,
    max_tokens: int = 3,
    max_code_lines: int = MAX_CODE_LINES,
) -> Callable[[list[dict]], list[tuple[str, str]]]:
    """A ``DocstringJudge`` over ``engine`` (use the cached generator engine).

    ``mode`` ``paper`` is the paper's judge (``votes`` sampled at ``temperature``; one greedy
    vote when ``votes`` is 1); ``signature`` is the small-model judge.
    """
    if mode not in MODES:
        raise ValueError(f"unknown docstring judge mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "paper":
        return _make_paper_judge(engine, votes, temperature, prompt_path or PAPER_PROMPT_FILE, max_code_lines)
    prompt = load_prompt(prompt_path or PROMPT_FILE)
    params = SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens, stop=("\n",), seed=0)

    def judge(rows: Sequence[dict]) -> list[tuple[str, str]]:
        requests = [
            LLMRequest(prompt=judge_prompt(row, prompt, max_code_lines), params=params, tag=str(row.get("id", "")))
            for row in rows
        ]
        results = []
        for samples in generate_tracked(engine, requests, "docstring_judge"):
            completion = samples[0]
            if not completion.ok:
                results.append((UNPARSED, f"<error: {completion.error}>"))
            else:
                results.append((parse_verdict(completion.text), completion.text))
        return results

    judge.version = prompt.version  # type: ignore[attr-defined]
    return judge


# -- the paper's judge ----------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]+")


def split_docstring(code: str) -> tuple[str, str]:
    """(docstring, code with the docstring's lines taken out) of the first function in ``code``.

    Comments stay: the judge compares the description with everything else the author wrote.
    ``("", code)`` when there is no function or no docstring.
    """
    code = textwrap.dedent(code or "").strip("\n")
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return "", code
    func = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    first = func.body[0] if func and func.body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)):
        return "", code
    lines = code.splitlines()
    rest = lines[: first.lineno - 1] + lines[first.end_lineno :]  # type: ignore[operator]
    return inspect.cleandoc(first.value.value), "\n".join(rest)


def _paper_block(code: str, max_code_lines: int) -> str:
    docstring, body = split_docstring(code)
    lines = body.splitlines()
    shown = "\n".join(lines[:max_code_lines] + (["    ..."] if len(lines) > max_code_lines else []))
    return f"### Code\n```python\n{shown}\n```\n### Docstring\n{docstring}\n### Enough to re-implement it, and accurate?\nAnswer:"


@lru_cache(maxsize=4)
def load_paper_prompt(path: str | Path = PAPER_PROMPT_FILE) -> JudgePrompt:
    """Parse and check the paper-mode prompt file (version, instruction, Yes/No examples with a reason)."""
    version, instruction, examples = _read_prompt_file(path)
    shots = []
    for i, example in enumerate(examples):
        if example.get("answer") not in ("Yes", "No") or not example.get("code") or not example.get("reason"):
            raise ValueError(f"{path}: examples[{i}] needs code, a reason and an answer of Yes or No")
        if not split_docstring(example["code"])[0]:
            raise ValueError(f"{path}: examples[{i}]: the code needs a docstring")
        shots.append(f"{_paper_block(example['code'], MAX_CODE_LINES)} {example['answer']}\nReason: {example['reason']}\n\n")
    return JudgePrompt(version=str(version), prefix=instruction.strip() + "\n\n" + "".join(shots))


def vote_of(answer: str) -> str:
    """One answer's vote: more "yes" words than "no" words is yes, fewer is no, else unparsed."""
    words = [w.lower() for w in _WORD.findall(answer or "")]
    yes, no = words.count(YES), words.count(NO)
    return YES if yes > no else NO if no > yes else UNPARSED


def tally(votes: Sequence[str]) -> str:
    """Keep (yes) only when yes-votes outnumber no-votes; a tie or no readable vote is no."""
    return YES if votes.count(YES) > votes.count(NO) else NO


def _make_paper_judge(
    engine: LLMEngine, votes: int, temperature: float, prompt_path: str | Path, max_code_lines: int
) -> Callable[[list[dict]], list[tuple[str, str]]]:
    if votes < 1:
        raise ValueError(f"judge votes must be >= 1, got {votes}")
    prompt = load_paper_prompt(prompt_path)
    params = SamplingParams(
        n=votes, temperature=temperature if votes > 1 else 0.0, max_tokens=5, stop=("\n",), seed=0
    )

    def judge(rows: Sequence[dict]) -> list[tuple[str, str]]:
        requests = [
            LLMRequest(prompt=prompt.prefix + _paper_block(row.get("code") or "", max_code_lines), params=params, tag=str(row.get("id", "")))
            for row in rows
        ]
        results = []
        for samples in generate_tracked(engine, requests, "docstring_judge"):
            answers = [c.text for c in samples if c.ok]
            if not answers:
                results.append((UNPARSED, f"<error: {samples[0].error if samples else 'no answer'}>"))
                continue
            results.append((tally([vote_of(a) for a in answers]), " | ".join(a.strip() for a in answers)))
        return results

    judge.version = prompt.version  # type: ignore[attr-defined]
    return judge
