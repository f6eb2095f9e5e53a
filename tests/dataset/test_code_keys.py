"""SelfCodeAlign's export-time sanitizing on real pairs: our few-shot library's answers.

Every few-shot example is a distinct, verified (instruction, response, code) pair: the export
keeps all of them. Derived pairs restate one of them in one stated way (same code under new
prose, reworded comments, renamed helper) and must be caught by the rule named.
"""

from __future__ import annotations

import polars as pl

from amr_dagster.dataset.code_keys import SeenPairs, code_representation, name_sets
from amr_dagster.dataset.export import ExportConfig, build_dataset
from amr_dagster.generation.fewshot import default_library
from amr_dagster.outcomes import with_status

LIBRARY = default_library()


def _pairs(examples) -> pl.DataFrame:
    rows = [
        {
            "id": f"pair-{i}",
            "instruction": e.instruction,
            "response": e.response,
            "code": e.code,
            "tests": e.test_code,
            "origin": "direct",
            "instruction_id": f"inst-{i}",
        }
        for i, e in enumerate(examples)
    ]
    frame = pl.DataFrame(rows)
    return with_status(frame, [None] * frame.height)


def test_code_representation_ignores_docstrings_comments_and_driver_code():
    example = LIBRARY.by_id("fn-medium-format-duration")
    restated = (
        "import sys\n\n"
        + example.code.replace("def format_duration(seconds):", 'def format_duration(seconds):\n    """Compact h/m/s."""', 1)
        .replace("    parts = []", "    parts = []  # collected units", 1)
        + "\n\nprint(format_duration(int(sys.argv[1])))\n"
    )
    assert restated != example.code
    assert code_representation(restated) == code_representation(example.code)
    assert "import" not in code_representation(restated) and "print(" not in code_representation(restated)


def test_name_sets_are_case_and_underscore_insensitive():
    functions, classes = name_sets(LIBRARY.by_id("class-medium-ttl-cache").code)
    assert classes and all(n == n.lower() and "_" not in n for n in functions | classes)
    assert name_sets("def formatDuration(s):\n    return s") == name_sets("def format_duration(s):\n    return s")


def test_seen_pairs_reject_copies_and_repeated_names():
    seen = SeenPairs()
    first = LIBRARY.by_id("fn-medium-format-duration")
    assert seen.judge(first.instruction, first.response, first.code) is None
    assert seen.judge(" " + first.instruction + "\n", "other", "def g(x):\n    return x") == "output_exact_duplicate: instruction"
    renamed_task = first.instruction.replace("compact string", "short string")
    assert seen.judge(renamed_task, "A new explanation.", first.code) == "output_repeated_names: functions formatduration"


def test_export_keeps_every_distinct_few_shot_pair_and_drops_restatements(tmp_path):
    examples = list(LIBRARY.examples)
    first = examples[0]
    restated = first.__class__(**{**first.__dict__, "instruction": first.instruction + " Be careful with empty input.",
                                  "response": "Another explanation.\n```python\n" + first.code + "```"})
    frame = _pairs(examples + [restated])
    dataset, stats = build_dataset([("batch-a", frame)], ExportConfig(), workdir=tmp_path)
    reasons = dict(zip(dataset.get_column("id").to_list(), dataset.get_column("reject_reason").to_list()))
    assert stats["exported"] == len(examples), stats["rejected_by_reason"]
    assert reasons[f"pair-{len(examples)}"].startswith("output_repeated_names")
    # without the name rule the code representation's near-dedup still catches it
    loose = ExportConfig(exact_dedup=False, dedup_function_names=False)
    dataset, stats = build_dataset([("batch-a", frame)], loose, workdir=tmp_path)
    last = dataset.filter(pl.col("id") == f"pair-{len(examples)}").get_column("reject_reason").item()
    assert last is not None and last.startswith("output_"), last
    assert stats["exported"] == len(examples)
