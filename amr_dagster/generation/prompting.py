"""Prompt assembly for the three SelfCodeAlign steps, and the per-row seeded choices behind it.

Everything random here is a pure function of (row id or shot-set key, global seed, salt), so a
row gets the same shots, category and difficulty on any machine and in any batch order.

Shot sets: with ``shot_sets = 0`` every row draws its own shots (most variety). With
``shot_sets = K`` a row is hashed into one of K sets and rows of one set share the whole few-shot
prefix, so llama.cpp or vLLM evaluates that prefix once for many rows; ``order_for_prefix_reuse``
puts rows of one set next to each other. The set is chosen from the row's own id, not its
position, so adding rows to a batch never changes the shots an existing row saw.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import yaml

from amr_dagster.generation.fewshot import FewShotExample, FewShotLibrary
from amr_dagster.ids import seed_for, stable_id

TEMPLATES_PATH = Path(__file__).resolve().parent.parent / "prompts" / "selfcodealign.yaml"
STEPS = ("concepts", "instructions", "responses")


@dataclass(frozen=True)
class StepTemplate:
    """One step's layout: a header, the filled example, the open query, and its stop strings."""

    header: str
    example: str
    query: str
    stop: tuple[str, ...]
    #: I->R only, optional: the text that opens the tests (``### Tests`` and an open fence) and the
    #: stop strings that end them, for writing the tests in a second call (``tests_call``)
    tests_lead: str = ""
    tests_stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Templates:
    version: str
    steps: dict[str, StepTemplate]

    def __getitem__(self, step: str) -> StepTemplate:
        return self.steps[step]


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def load_templates(path: Path | str = TEMPLATES_PATH) -> Templates:
    """Read and check the templates file; errors name the file and the step."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("version"), str) or not data["version"]:
        raise ValueError(f"{path}: field 'version': expected a non-empty string")
    steps = {}
    for step in STEPS:
        spec = data.get(step)
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: field {step!r}: missing")
        for key in ("header", "example", "query", "stop"):
            if key not in spec:
                raise ValueError(f"{path}: field '{step}.{key}': missing")
        if not isinstance(spec["stop"], list) or not all(isinstance(s, str) and s for s in spec["stop"]):
            raise ValueError(f"{path}: field '{step}.stop': expected a list of non-empty strings")
        extra = _placeholders(spec["query"]) - _placeholders(spec["example"])
        if extra:
            raise ValueError(f"{path}: field '{step}.query': placeholders {sorted(extra)} not in the example")
        lead, tests_stop = spec.get("tests_lead", ""), spec.get("tests_stop", [])
        if not isinstance(lead, str) or not isinstance(tests_stop, list) or not all(isinstance(s, str) and s for s in tests_stop):
            raise ValueError(f"{path}: fields '{step}.tests_lead'/'{step}.tests_stop': expected a string and a list of strings")
        if bool(lead) != bool(tests_stop):
            raise ValueError(f"{path}: fields '{step}.tests_lead' and '{step}.tests_stop' go together")
        steps[step] = StepTemplate(
            header=spec["header"].strip(),
            example=spec["example"].strip(),
            query=spec["query"].rstrip() + "\n",
            stop=tuple(spec["stop"]),
            tests_lead=lead,
            tests_stop=tuple(tests_stop),
        )
    return Templates(version=data["version"], steps=steps)


@lru_cache(maxsize=8)
def templates_named(name: str = TEMPLATES_PATH.name) -> Templates:
    """A packaged templates file by its name under ``prompts/`` (a profile's ``templates_file``),
    loaded once per process; an absolute path is taken as is."""
    path = Path(name)
    return load_templates(path if path.is_absolute() else TEMPLATES_PATH.parent / name)


def default_templates() -> Templates:
    return templates_named(TEMPLATES_PATH.name)


def prompt_version(templates: Templates, library: FewShotLibrary) -> str:
    """What every row records: template version plus the few-shot library's digest."""
    return f"{templates.version}+fs.{library.digest[:12]}"


# -- seeded choices ---------------------------------------------------------------------------


def shot_key(row_id: str, shot_sets: int) -> str:
    """The key shots are drawn from: the row itself, or the shot set the row hashes into."""
    if shot_sets <= 0:
        return f"row:{row_id}"
    return f"set:{int(stable_id('shot-set', row_id), 16) % shot_sets}"


def choose_shots(
    library: FewShotLibrary,
    key: str,
    k: int,
    global_seed: int,
    salt: str,
    prefer_category: str | None = None,
    difficulties: Sequence[str] = (),
    only_category: bool = False,
) -> list[FewShotExample]:
    """``k`` distinct examples drawn with a seed from ``key``.

    With ``prefer_category`` the last shot (the one nearest the query, which a small model
    imitates most) is of that category when the library has one; with ``only_category`` too,
    every shot is, when the library has ``k`` of them (a small model shown a class writes a
    class, even for a function task). ``difficulties`` (empty = all)
    draws only examples of those difficulties, unless fewer than ``k`` of them exist: short easy
    examples are what a small model can imitate to the end.
    """
    examples = list(library.examples)
    if difficulties:
        chosen = [e for e in examples if e.difficulty in difficulties]
        examples = chosen if len(chosen) >= k else examples
    k = max(0, min(k, len(examples)))
    rng = random.Random(seed_for(key, global_seed, salt))
    if prefer_category is None or k == 0:
        return rng.sample(examples, k)
    same = [e for e in examples if e.category == prefer_category]
    if not same:
        return rng.sample(examples, k)
    if only_category and len(same) >= k:
        return rng.sample(same, k)
    last = rng.choice(same)
    rest = rng.sample([e for e in examples if e.id != last.id], k - 1)
    return rest + [last]


def draw_property(row_id: str, global_seed: int, name: str, choices: Sequence[str]) -> str:
    """A per-row seeded draw (category from function/function/class/program, difficulty...)."""
    return random.Random(seed_for(row_id, global_seed, f"property:{name}")).choice(list(choices))


def order_for_prefix_reuse(keys: Sequence[str], row_ids: Sequence[str]) -> list[int]:
    """Positions sorted so rows sharing a shot set are adjacent (then by id: stable)."""
    return sorted(range(len(keys)), key=lambda i: (keys[i], row_ids[i]))


# -- prompt text ------------------------------------------------------------------------------


def _concepts_line(concepts: Sequence[str]) -> str:
    return ", ".join(concepts)


def _fill(template: str, **values: object) -> str:
    return template.format(**values)


def _assemble(step: StepTemplate, examples: list[str], query: str) -> str:
    return step.header + "\n\n" + "\n\n".join(examples + [query])


def concepts_prompt(templates: Templates, shots: Sequence[FewShotExample], seed_code: str) -> str:
    """S->C: shots show function -> concept line; the query leaves the concept line open."""
    step = templates["concepts"]
    filled = [
        _fill(step.example, number=i + 1, seed=ex.seed, concepts=_concepts_line(ex.concepts))
        for i, ex in enumerate(shots)
    ]
    query = _fill(step.query, number=len(shots) + 1, seed=seed_code.strip("\n"))
    return _assemble(step, filled, query)


def instruction_prompt(
    templates: Templates,
    shots: Sequence[FewShotExample],
    concepts: Sequence[str],
    category: str,
    difficulty: str,
    language: str = "python",
) -> str:
    """C->I: shots show properties + concepts -> instruction; the query leaves the instruction open."""
    step = templates["instructions"]
    filled = [
        _fill(
            step.example,
            number=i + 1,
            category=ex.category,
            language=ex.language,
            difficulty=ex.difficulty,
            concepts=_concepts_line(ex.concepts),
            instruction=ex.instruction,
        )
        for i, ex in enumerate(shots)
    ]
    query = _fill(
        step.query,
        number=len(shots) + 1,
        category=category,
        language=language,
        difficulty=difficulty,
        concepts=_concepts_line(concepts),
    )
    return _assemble(step, filled, query)


def response_prompt(templates: Templates, shots: Sequence[FewShotExample], instruction: str) -> str:
    """I->R: shots show instruction -> explanation, code block, tests block; the query leaves the response open."""
    step = templates["responses"]
    filled = [
        _fill(step.example, number=i + 1, instruction=ex.instruction, response=ex.response, tests=ex.tests)
        for i, ex in enumerate(shots)
    ]
    query = _fill(step.query, number=len(shots) + 1, instruction=instruction.strip())
    return _assemble(step, filled, query)
