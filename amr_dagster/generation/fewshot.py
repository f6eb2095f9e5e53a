"""The few-shot library: our own worked examples, one YAML file each, validated on load.

Every example walks the whole SelfCodeAlign chain once (seed -> concepts -> instruction ->
response with tests), so the same file serves as a shot for all three prompts. The files live in
``amr_dagster/prompts/fewshot/``; the library's digest goes into every row's prompt version, so
editing an example makes downstream rows stale instead of silently mixing two libraries.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

FEWSHOT_DIR = Path(__file__).resolve().parent.parent / "prompts" / "fewshot"
SCHEMA_VERSION = 1
CATEGORIES = ("function", "class", "program")
DIFFICULTIES = ("easy", "medium", "hard")
LANGUAGES = ("python",)

_FIELDS = ("schema_version", "id", "seed", "concepts", "properties", "instruction", "response", "tests")
_PROPERTY_FIELDS = ("category", "language", "difficulty")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


class FewShotSchemaError(ValueError):
    """A few-shot file does not match the schema; the message names the file and the field."""

    def __init__(self, path: Path | str, field: str, problem: str) -> None:
        super().__init__(f"{path}: field {field!r}: {problem}")
        self.path = str(path)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class FewShotExample:
    """One worked example. ``response`` is explanation + a python block; ``tests`` is a python block."""

    id: str
    seed: str
    concepts: tuple[str, ...]
    category: str
    language: str
    difficulty: str
    instruction: str
    response: str
    tests: str
    source: str = ""

    @property
    def code(self) -> str:
        """The code inside the response's python block."""
        return _PYTHON_BLOCK.search(self.response).group(1)  # type: ignore[union-attr]

    @property
    def test_code(self) -> str:
        """The code inside the tests' python block."""
        return _PYTHON_BLOCK.search(self.tests).group(1)  # type: ignore[union-attr]


def _text(path: Path, data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise FewShotSchemaError(path, field, f"expected a non-empty string, got {value!r:.60}")
    return value.strip()


def _python_block(path: Path, field: str, text: str) -> None:
    blocks = _PYTHON_BLOCK.findall(text)
    if len(blocks) != 1:
        raise FewShotSchemaError(path, field, f"expected exactly one ```python block, found {len(blocks)}")
    try:
        compile(blocks[0], f"{path}:{field}", "exec")
    except SyntaxError as err:
        raise FewShotSchemaError(path, field, f"python block does not compile: line {err.lineno}: {err.msg}") from None


def parse_example(data: Any, path: Path | str = "<memory>") -> FewShotExample:
    """Validate one loaded YAML document; raise ``FewShotSchemaError`` naming the bad field."""
    path = Path(path)
    if not isinstance(data, dict):
        raise FewShotSchemaError(path, "<document>", f"expected a mapping, got {type(data).__name__}")
    missing = [f for f in _FIELDS if f not in data]
    if missing:
        raise FewShotSchemaError(path, missing[0], "missing")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise FewShotSchemaError(path, unknown[0], "unknown field")
    if data["schema_version"] != SCHEMA_VERSION:
        raise FewShotSchemaError(path, "schema_version", f"expected {SCHEMA_VERSION}, got {data['schema_version']!r}")
    example_id = _text(path, data, "id")
    if not _ID.match(example_id):
        raise FewShotSchemaError(path, "id", f"expected lower-case letters, digits and dashes, got {example_id!r}")
    concepts = data["concepts"]
    if not isinstance(concepts, list) or not concepts:
        raise FewShotSchemaError(path, "concepts", "expected a non-empty list of short phrases")
    for index, concept in enumerate(concepts):
        if not isinstance(concept, str) or not concept.strip() or len(concept) > 60 or "," in concept:
            raise FewShotSchemaError(path, f"concepts[{index}]", f"expected a short phrase without commas, got {concept!r}")
    props = data["properties"]
    if not isinstance(props, dict):
        raise FewShotSchemaError(path, "properties", "expected a mapping with category, language, difficulty")
    allowed = {"category": CATEGORIES, "language": LANGUAGES, "difficulty": DIFFICULTIES}
    for key in _PROPERTY_FIELDS:
        if props.get(key) not in allowed[key]:
            raise FewShotSchemaError(path, f"properties.{key}", f"expected one of {allowed[key]}, got {props.get(key)!r}")
    unknown = sorted(set(props) - set(_PROPERTY_FIELDS))
    if unknown:
        raise FewShotSchemaError(path, f"properties.{unknown[0]}", "unknown field")
    seed = _text(path, data, "seed")
    try:
        compile(seed, f"{path}:seed", "exec")
    except SyntaxError as err:
        raise FewShotSchemaError(path, "seed", f"does not compile: line {err.lineno}: {err.msg}") from None
    response = _text(path, data, "response")
    tests = _text(path, data, "tests")
    _python_block(path, "response", response)
    _python_block(path, "tests", tests)
    if not response.split("```", 1)[0].strip():
        raise FewShotSchemaError(path, "response", "expected a short explanation before the code block")
    test_code = _PYTHON_BLOCK.search(tests).group(1)  # type: ignore[union-attr]
    if not re.search(r"^def test_\w+\(", test_code, re.MULTILINE):
        raise FewShotSchemaError(path, "tests", "expected at least one top-level `def test_...():` function")
    return FewShotExample(
        id=example_id,
        seed=seed,
        concepts=tuple(c.strip() for c in concepts),
        category=props["category"],
        language=props["language"],
        difficulty=props["difficulty"],
        instruction=_text(path, data, "instruction"),
        response=response,
        tests=tests,
        source=str(path),
    )


def load_example(path: Path | str) -> FewShotExample:
    """Load and validate one YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise FewShotSchemaError(path, "<document>", f"invalid YAML: {err}") from None
    return parse_example(data, path)


@dataclass(frozen=True)
class FewShotLibrary:
    """All examples of a folder, sorted by id, with a digest of their files' bytes."""

    examples: tuple[FewShotExample, ...]
    digest: str

    def __len__(self) -> int:
        return len(self.examples)

    def by_id(self, example_id: str) -> FewShotExample:
        for example in self.examples:
            if example.id == example_id:
                return example
        raise KeyError(example_id)


def load_library(folder: Path | str = FEWSHOT_DIR) -> FewShotLibrary:
    """Load every ``*.yaml`` of ``folder``; ids must be unique. Raises ``FewShotSchemaError``."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise FewShotSchemaError(folder, "<folder>", "no *.yaml few-shot examples found")
    digest = hashlib.blake2b(digest_size=8)
    examples: dict[str, FewShotExample] = {}
    for path in paths:
        example = load_example(path)
        if example.id in examples:
            raise FewShotSchemaError(path, "id", f"duplicate id {example.id!r} (also in {examples[example.id].source})")
        examples[example.id] = example
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    ordered = tuple(examples[k] for k in sorted(examples))
    return FewShotLibrary(examples=ordered, digest=digest.hexdigest())


PROMPTS_DIR = FEWSHOT_DIR.parent


@lru_cache(maxsize=8)
def library_named(name: str = FEWSHOT_DIR.name) -> FewShotLibrary:
    """A packaged library by its folder name under ``prompts/`` (a profile's ``fewshot_dir``),
    loaded once per process; an absolute path is taken as is."""
    folder = Path(name)
    return load_library(folder if folder.is_absolute() else PROMPTS_DIR / name)


def default_library() -> FewShotLibrary:
    """The packaged default library, loaded once per process."""
    return library_named(FEWSHOT_DIR.name)
