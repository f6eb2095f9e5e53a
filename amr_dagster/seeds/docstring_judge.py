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
"""

from __future__ import annotations

import ast
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


@lru_cache(maxsize=4)
def load_prompt(path: str | Path = PROMPT_FILE) -> JudgePrompt:
    """Parse and check the prompt file (a version, an instruction, yes/no examples)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    version, instruction, examples = data.get("version"), data.get("instruction"), data.get("examples")
    if not version or not instruction or not examples:
        raise ValueError(f"{path}: needs version, instruction and examples")
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
    prompt_path: str | Path = PROMPT_FILE,
    max_tokens: int = 3,
    max_code_lines: int = MAX_CODE_LINES,
) -> Callable[[list[dict]], list[tuple[str, str]]]:
    """A ``DocstringJudge`` over ``engine`` (use the cached generator engine)."""
    prompt = load_prompt(prompt_path)
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
