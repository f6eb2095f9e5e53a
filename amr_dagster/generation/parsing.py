"""Turning raw base-model completions into concepts, instructions and (code, tests) pairs.

A small base model does not follow a format, it continues one: it rambles past the end of its
answer, starts the next example, repeats a header, leaves a code block open or runs into
``max_tokens``. Each parser takes the raw text and the finish reason and returns either what it
extracted or a reject reason (``family`` or ``family: detail``), never an exception.
Tests in ``tests/generation/test_generation_parsing.py`` run these on outputs recorded from the real model.
"""

from __future__ import annotations

import ast
import difflib
import re
import zlib
from dataclasses import dataclass
from typing import Mapping

from amr_dagster.generation.sanitizing import incomplete_marker, too_many_words
from amr_dagster.generation.weak_tests import weak_tests_reason

FINISH_LENGTH = "length"

# A line that starts another example or repeats a header of the prompt: the answer ended before it.
# Unindented and with at least two hashes, so a "# Example usage" comment in code is not one.
_BOUNDARY = re.compile(r"^#{2,4}[ \t]*(example|instruction|response|properties|function|concepts)\b", re.I | re.M)
_TESTS_HEADER = re.compile(r"^\s*(#{1,4}\s*)?(unit\s+)?tests?\s*:?\s*$", re.I)
_PROMPT_TESTS_HEADER = re.compile(r"^###\s*tests?\s*:?\s*$", re.I)
_FENCE_OPEN = re.compile(r"^\s*```\s*([A-Za-z0-9_+-]*)\s*$")
_FENCE_CLOSE = re.compile(r"^\s*```\s*$")
_CODE_LANGS = {"", "python", "py", "python3"}


def _cut_at_boundary(text: str) -> str:
    """Drop everything from the first line that starts a new example or repeats a header."""
    match = _BOUNDARY.search(text)
    return text[: match.start()] if match else text


def _is_repetitive(text: str) -> bool:
    """Degenerate loops compress extremely well; real prose and code do not."""
    data = text.encode("utf-8", "replace")
    return len(data) >= 200 and len(zlib.compress(data)) / len(data) < 0.2


def normalize_code(code: str) -> str:
    """Whitespace-insensitive form used to spot copies of a few-shot answer."""
    return re.sub(r"\s+", "", code)


class CopyDetector:
    """Spots (near-)verbatim copies of few-shot texts: a small model often repeats a shot with a
    typo or a renamed identifier, which is not a new task or a new solution."""

    def __init__(self, texts: Mapping[str, str], threshold: float = 0.8) -> None:
        self.threshold = threshold
        self.texts = {example_id: normalize_code(text).lower() for example_id, text in texts.items()}

    def match(self, text: str) -> str | None:
        """The id of the example ``text`` copies, if any."""
        candidate = normalize_code(text).lower()
        if not candidate:
            return None
        for example_id, known in self.texts.items():
            matcher = difflib.SequenceMatcher(None, candidate, known, autojunk=False)
            if matcher.real_quick_ratio() >= self.threshold and matcher.quick_ratio() >= self.threshold:
                if matcher.ratio() >= self.threshold:
                    return example_id
        return None


# -- S->C -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedConcepts:
    concepts: tuple[str, ...]
    reason: str | None


_CONCEPT_STRIP = " \t-*•`'\".:;"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]*_\w*$")


def parse_concepts(
    text: str, finish_reason: str, seed_name: str | None = None, max_concepts: int = 8, min_salvaged: int = 2
) -> ParsedConcepts:
    """One comma-separated line of short phrases; duplicates, the seed's own name and bare
    snake_case identifiers dropped.

    A small model often loops on one phrase until ``max_tokens``. Such a line is salvaged when
    its complete items (all but the cut last one) still give ``min_salvaged`` distinct
    concepts; otherwise it is ``unterminated``.
    """
    line = text.strip().split("\n", 1)[0]
    parts = re.split(r"[,;]", line)
    cut = finish_reason == FINISH_LENGTH
    if cut:
        parts = parts[:-1]
    seen: set[str] = set()
    concepts: list[str] = []
    for part in parts:
        concept = re.sub(r"\s+", " ", part).strip(_CONCEPT_STRIP)
        key = concept.lower()
        if not concept or len(concept) > 60 or key in seen:
            continue
        if seed_name and key == seed_name.lower():
            continue
        if _IDENTIFIER.match(concept):  # "rgb_to_hsv_to_h" names code, it is not a concept
            continue
        seen.add(key)
        concepts.append(concept)
    if cut and len(concepts) < min_salvaged:
        return ParsedConcepts((), "unterminated: hit max_tokens")
    if not concepts:
        return ParsedConcepts((), "unparsed: no concepts")
    return ParsedConcepts(tuple(concepts[:max_concepts]), None)


# -- C->I -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedInstruction:
    instruction: str
    reason: str | None


def parse_instruction(
    text: str,
    finish_reason: str,
    *,
    min_chars: int = 40,
    max_chars: int = 1500,
    copies: CopyDetector | None = None,
    paragraphs: bool = False,
    max_words: int = 0,
) -> ParsedInstruction:
    """The task text up to the next header, blank-line paragraph break or code fence.

    ``paragraphs``: keep several paragraphs (and code fences inside the task) up to the next
    header, as the reference's multi-paragraph tasks need. ``copies`` knows the few-shot
    instructions: a (near-)copy of a shot is not a new task. ``max_words`` > 0 rejects longer
    tasks (``too_many_words``).
    """
    body = _cut_at_boundary(text)
    if not paragraphs:
        body = body.split("\n\n", 1)[0].split("```", 1)[0]
    body = re.sub(r"^\s*instruction\s*:\s*", "", body, flags=re.I).strip()
    if not body:
        return ParsedInstruction("", "empty")
    if finish_reason == FINISH_LENGTH and body.strip() == text.strip():
        return ParsedInstruction(body, "unterminated: hit max_tokens")
    if len(body) < min_chars:
        return ParsedInstruction(body, f"too_short: {len(body)} chars")
    if len(body) > max_chars:
        return ParsedInstruction(body, f"too_long: {len(body)} chars")
    if _is_repetitive(body):
        return ParsedInstruction(body, "repetitive")
    wordy = too_many_words(body, max_words)
    if wordy:
        return ParsedInstruction(body, wordy)
    copied = copies.match(body) if copies else None
    if copied:
        return ParsedInstruction(body, f"copied_fewshot: {copied}")
    return ParsedInstruction(body, None)


# -- I->R -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedResponse:
    explanation: str
    code: str
    tests: str
    reason: str | None

    @property
    def response(self) -> str:
        """The response as the dataset stores it: explanation, then the code block."""
        head = self.explanation + "\n\n" if self.explanation else ""
        return f"{head}```python\n{self.code}\n```"


@dataclass
class _Block:
    lang: str
    start: int  # index of the opening fence line
    end: int | None  # index of the closing fence line, None when never closed
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip("\n")


def _scan(lines: list[str]) -> tuple[list[_Block], int | None]:
    """Fenced blocks, and the index of the first tests header outside any block."""
    blocks: list[_Block] = []
    header: int | None = None
    current: _Block | None = None
    for i, line in enumerate(lines):
        if current is not None:
            if _FENCE_CLOSE.match(line):
                current.end = i
                blocks.append(current)
                current = None
            elif header is None and _PROMPT_TESTS_HEADER.match(line):
                # "### Tests" inside an open block: the model forgot the closing fence.
                current.end = i
                blocks.append(current)
                current = None
                header = i
            else:
                current.lines.append(line)
            continue
        opening = _FENCE_OPEN.match(line)
        if opening:
            current = _Block(opening.group(1).lower(), i, None, [])
        elif header is None and _TESTS_HEADER.match(line):
            header = i
    if current is not None:
        blocks.append(current)
    return blocks, header


def _has_assert(tree: ast.AST) -> bool:
    return any(isinstance(node, ast.Assert) for node in ast.walk(tree))


def _syntax(source: str, what: str) -> tuple[ast.AST | None, str | None]:
    try:
        return ast.parse(source), None
    except SyntaxError as err:
        return None, f"syntax_error: {what} line {err.lineno}"
    except ValueError as err:  # e.g. NUL bytes
        return None, f"syntax_error: {what} {err}"


def code_problem(code: str) -> str | None:
    """``syntax_error: code line N`` when ``code`` does not parse, else None."""
    return _syntax(code, "code")[1]


def _salvage_cut_tests(lines: list[str], max_dropped: int = 12) -> str:
    """Tests cut by ``max_tokens``, typically after the model looped on one assert: drop the
    cut tail until the rest parses, and collapse runs of identical lines. Empty if hopeless."""
    kept: list[str] = []
    for line in lines[:-1]:  # the last line is where the cut happened
        if not (kept and line.strip() and line == kept[-1]):
            kept.append(line)
    for drop in range(min(max_dropped, len(kept)) + 1):
        candidate = "\n".join(kept[: len(kept) - drop]).strip("\n")
        if not candidate.strip():
            return ""
        try:
            tree = ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
        return candidate if _has_assert(tree) else ""
    return ""


def parse_response(
    text: str,
    finish_reason: str,
    *,
    copies: CopyDetector | None = None,
    min_assertions: int = 2,
    require_call: bool = True,
    reject_incomplete: bool = True,
) -> ParsedResponse:
    """Explanation, the first python block before the tests header, and the tests after it.

    An open code block is closed by the tests header when one follows (the model forgot the
    fence); an open tests block at a natural stop is taken as written; a tests block cut by
    ``max_tokens`` keeps its complete statements (a small model often loops on one assert until
    the limit); an open code block at the limit is ``unterminated``. A complete answer followed
    by rambling that ran into ``max_tokens`` is accepted: the rambling is cut off. Tests that
    cannot tell right code from wrong are rejected (``weak_tests``: never call the code, fewer
    than ``min_assertions`` assertions), and so is unfinished code (``incomplete_code``).
    """
    hit_limit = finish_reason == FINISH_LENGTH
    body = _cut_at_boundary(text)
    lines = body.split("\n")
    blocks, header = _scan(lines)
    blocks = [b for b in blocks if b.lang in _CODE_LANGS]

    def reject(reason: str, explanation: str = "", code: str = "", tests: str = "") -> ParsedResponse:
        return ParsedResponse(explanation, code, tests, reason)

    code_block = next((b for b in blocks if header is None or b.start < header), None)
    if code_block is None:
        return reject("unterminated: hit max_tokens" if hit_limit and not blocks else "no_code_block")
    explanation = "\n".join(lines[: code_block.start]).strip()
    if code_block.end is None:
        if header is not None and header > code_block.start:
            code_block.lines = lines[code_block.start + 1 : header]
        else:
            return reject("unterminated: hit max_tokens" if hit_limit else "unterminated: code block not closed", explanation)
    code = code_block.text
    if not code.strip():
        return reject("no_code_block: empty", explanation)

    after = [b for b in blocks if b.start > code_block.start]
    if header is not None:
        tests_block = next((b for b in after if b.start > header), None)
    else:
        tests_block = next((b for b in after if "assert" in b.text), None)
    if tests_block is None and header is not None:
        loose = "\n".join(lines[header + 1 :]).strip()
        tests = loose if "assert" in loose and "```" not in loose else ""
    elif tests_block is not None:
        tests = tests_block.text
        if tests_block.end is None and hit_limit:
            tests = _salvage_cut_tests(tests_block.lines)
            if not tests:
                return reject("unterminated: hit max_tokens", explanation, code)
    else:
        tests = ""
    if not tests.strip():
        return reject("unterminated: hit max_tokens" if hit_limit else "no_tests", explanation, code)

    code_tree, problem = _syntax(code, "code")
    if problem:
        return reject(problem, explanation, code, tests)
    tests_tree, problem = _syntax(tests, "tests")
    if problem:
        return reject(problem, explanation, code, tests)
    if not _has_assert(tests_tree):  # type: ignore[arg-type]
        return reject("no_tests: no assert statements", explanation, code, tests)
    unfinished = incomplete_marker(explanation, code, tests) if reject_incomplete else None
    if unfinished:
        return reject(unfinished, explanation, code, tests)
    weak = weak_tests_reason(code_tree, tests_tree, min_assertions, require_call)  # type: ignore[arg-type]
    if weak:
        return reject(weak, explanation, code, tests)
    copied = copies.match(code) if copies else None
    if copied:
        return reject(f"copied_fewshot: {copied}", explanation, code, tests)
    return ParsedResponse(explanation, code, tests, None)
