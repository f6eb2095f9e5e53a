"""The contract between stages: every stage's columns and types, and the stage order.

The one place a column is declared. Stage modules build frames that satisfy these schemas and
import them from here; every partitioned asset's ``schema`` check compares its frame with
``STAGE_SCHEMAS[stage]``; the Dagster layer shows them as column schemas in the UI. The status
vocabulary of a row is ``amr_dagster.outcomes`` (accepted/rejected); of a sandbox verdict,
``amr_dagster.sandbox.base.Status``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from amr_dagster.outcomes import REASON, STATUS

# -- column names the later stages read by name ------------------------------------------------

ID = "id"
PARENT = "parent_id"
INSTRUCTION = "instruction"
RESPONSE = "response"
CODE = "code"
TESTS = "tests"
#: the sandbox's verdict of a sample (``amr_dagster.sandbox.base.Status``); a frame's ``status``
#: only says whether the row was accepted, so a failing sample is still a candidate direct response
VERDICT = "sandbox_status"
TESTS_PASSED = "tests_passed"
TESTS_RUN = "tests_run"

# -- seeds ------------------------------------------------------------------------------------

SEED_FUNCTION_COLUMNS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "parent_id": pl.String(),
    "batch": pl.String(),
    "source_path": pl.String(),
    "repo": pl.String(),
    "license": pl.String(),
    "line_start": pl.Int64(),
    "line_end": pl.Int64(),
    "name": pl.String(),
    "is_async": pl.Boolean(),
    "docstring": pl.String(),
    "code": pl.String(),
    "imports": pl.List(pl.String()),
    STATUS: pl.String(),
    REASON: pl.String(),
}

#: ``filtered_seeds``: the seed_functions columns plus the judge's two.
FILTERED_SEED_COLUMNS: dict[str, pl.DataType] = {
    **SEED_FUNCTION_COLUMNS,
    "judge_verdict": pl.String(),
    "judge_answer": pl.String(),
}

DEDUPED_SEED_COLUMNS: dict[str, pl.DataType] = {
    **FILTERED_SEED_COLUMNS,
    "duplicate_of": pl.String(),
    "duplicate_jaccard": pl.Float64(),
}

# -- SelfCodeAlign generation ------------------------------------------------------------------

LLM_COLUMNS: dict[str, pl.DataType] = {
    "shot_ids": pl.List(pl.String()),
    "prompt_version": pl.String(),
    "model_id": pl.String(),
    # lineage of the engine that wrote the row (llm.base.ModelIdentity)
    "engine": pl.String(),
    "model": pl.String(),
    "checkpoint_sha256": pl.String(),
    "seeded": pl.Boolean(),
    "raw_output": pl.String(),
    "finish_reason": pl.String(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "cached": pl.Boolean(),
    "profile": pl.String(),  # the settings profile the row was generated under
    "status": pl.String(),
    "reject_reason": pl.String(),
}

CONCEPT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "parent_id": pl.String(),
    "seed_id": pl.String(),
    "batch": pl.String(),
    "seed_name": pl.String(),
    "concepts": pl.List(pl.String()),
    **LLM_COLUMNS,
}

INSTRUCTION_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "parent_id": pl.String(),
    "seed_id": pl.String(),
    "batch": pl.String(),
    "concepts": pl.List(pl.String()),
    "category": pl.String(),
    "difficulty": pl.String(),
    "language": pl.String(),
    "instruction": pl.String(),
    **LLM_COLUMNS,
}

RESPONSE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "parent_id": pl.String(),
    "seed_id": pl.String(),
    "batch": pl.String(),
    "sample_index": pl.Int64(),
    "concepts": pl.List(pl.String()),
    "category": pl.String(),
    "difficulty": pl.String(),
    "language": pl.String(),
    "instruction": pl.String(),
    "response": pl.String(),
    "explanation": pl.String(),
    "code": pl.String(),
    "tests": pl.String(),
    **LLM_COLUMNS,
}

VERDICT_COLUMNS: dict[str, pl.DataType] = {
    "sandbox_status": pl.String(),
    "tests_run": pl.Int64(),
    "tests_passed": pl.Int64(),
    "duration_s": pl.Float64(),
    "sandbox_detail": pl.String(),
    "sandbox_backend": pl.String(),
}

#: Where a row's code and tests came from: null on a sample's own row; on a row of one sample's
#: code with its siblings' pooled tests (``generation.sibling_tests``), the samples' ids.
ORIGIN_COLUMNS: dict[str, pl.DataType] = {"code_from": pl.String(), "tests_from": pl.List(pl.String())}

#: ``executed_responses``: the parsed samples with their sandbox verdicts, and the sibling-tests rows.
EXECUTED_SCHEMA: dict[str, pl.DataType] = {**RESPONSE_SCHEMA, **VERDICT_COLUMNS, **ORIGIN_COLUMNS}


def own_and_sibling_rows(executed: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the samples' own rows, the sibling-tests rows) of an ``executed_responses`` frame; a
    frame written before sibling tests existed holds own rows only."""
    if "tests_from" not in executed.columns:
        return executed, executed.head(0)
    sibling = pl.col("tests_from").is_not_null()
    return executed.filter(~sibling), executed.filter(sibling)

#: A response to an instruction, as evolution writes it and verification keeps it (``parent_id``:
#: the response it came from).
RESPONSE_PAIR_COLUMNS: dict[str, Any] = {
    "id": pl.String,
    "parent_id": pl.String,
    "instruction_id": pl.String,
    "instruction": pl.String,
    "response": pl.String,
    "code": pl.String,
    "tests": pl.String,
}

# -- AMR-Evol ----------------------------------------------------------------------------------

DIRECT_COLUMNS = {
    "instruction_id": pl.String,
    "instruction": pl.String,
    "direct_id": pl.String,
    "response": pl.String,
    "code": pl.String,
    "tests": pl.String,
    "sandbox_status": pl.String,
    "tests_passed": pl.Int64,
    "tests_run": pl.Int64,
    "direct_passed": pl.Boolean,
    "samples": pl.Int64,
    "passing_samples": pl.Int64,
}

MODULE_COLUMNS = {
    "module_id": pl.String,
    "parent_id": pl.String,
    "instruction_id": pl.String,
    "name": pl.String,
    "signature": pl.String,
    "description": pl.String,
    "parameters": pl.List(pl.Struct({"name": pl.String, "type": pl.String, "description": pl.String})),
    "return_type": pl.String,
    "returns": pl.String,
    "typed": pl.Boolean,
    "source": pl.String,
    "position": pl.Int64,
    "direct_passed": pl.Boolean,
    "raw_output": pl.String,
    "model_id": pl.String,
    "prompt_version": pl.String,
}

CANDIDATE_SCHEMA: dict[str, Any] = {
    "module_id": pl.String,
    "name": pl.String,
    "signature": pl.String,
    "description": pl.String,
    "code": pl.String,
    "embed_text": pl.String,
    "source": pl.String,
    "batch": pl.String,
    "parent_id": pl.String,
    "verified": pl.Boolean,
    "verified_how": pl.String,
    REASON: pl.String,
    STATUS: pl.String,
}

#: One retrieved entry as the evolution stage reads it (``retrieve_for_queries``).
RETRIEVED_LIST = pl.List(
    pl.Struct(
        {
            "entry_id": pl.String,
            "similarity": pl.Float64,
            "name": pl.String,
            "signature": pl.String,
            "description": pl.String,
            "code": pl.String,
        }
    )
)

ENTRY_COLUMNS = [c for c in CANDIDATE_SCHEMA if c not in (REASON, STATUS)]

ENTRY_SCHEMA: dict[str, Any] = {
    **{c: CANDIDATE_SCHEMA[c] for c in ENTRY_COLUMNS},
    "position": pl.Int64,
    "added_in_snapshot": pl.String,
}

EVOLVED_COLUMNS = {
    **RESPONSE_PAIR_COLUMNS,
    "raw_output": pl.String,
    "finish_reason": pl.String,
    "direct_passed": pl.Boolean,
    "unchanged": pl.Boolean,
    "module_ids": pl.List(pl.String),
    "retrieved_module_ids": pl.List(pl.String),
    "retrieved_similarities": pl.List(pl.Float64),
    "library_snapshot": pl.String,
    "use_decomposition": pl.Boolean,
    "use_retrieval": pl.Boolean,
    "model_id": pl.String,
    "prompt_version": pl.String,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
}

#: ``evolved_responses``: the rewrites with their own sandbox verdicts.
EVOLVED_SCHEMA: dict[str, Any] = {**EVOLVED_COLUMNS, **VERDICT_COLUMNS}

# -- verified pairs and the dataset -------------------------------------------------------------

VERIFIED_COLUMNS = {
    **RESPONSE_PAIR_COLUMNS,
    "origin": pl.String,
    "direct_id": pl.String,
    "evolved_id": pl.String,
    "evolved_verdict": pl.String,
    "passing_direct_samples": pl.Int64,
}

#: Columns of the exported records (the JSONL lines and the Parquet file).
DATASET_COLUMNS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "instruction": pl.String(),
    "response": pl.String(),
    "code": pl.String(),
    "tests": pl.String(),
    "origin": pl.String(),
    "batch": pl.String(),
    "instruction_id": pl.String(),
    "seed_id": pl.String(),
    "seed_name": pl.String(),
    "seed_source_path": pl.String(),
    "seed_line_start": pl.Int64(),
    "seed_line_end": pl.Int64(),
    "seed_repo": pl.String(),
    "seed_license": pl.String(),
    "profile": pl.String(),  # the settings profile the pair was generated under
}

#: ``verified_pairs``: the selection, its seed's lineage, and the row's status.
VERIFIED_PAIR_COLUMNS: dict[str, Any] = {
    **VERIFIED_COLUMNS,
    **{c: t for c, t in DATASET_COLUMNS.items() if c.startswith("seed_") or c in ("batch", "profile")},
    STATUS: pl.String(),
    REASON: pl.String(),
}

# -- the stages -------------------------------------------------------------------------------

#: Every stage partitioned by seed batch, in pipeline order, with the schema its frame must hold.
STAGE_SCHEMAS: dict[str, dict[str, Any]] = {
    "seed_functions": SEED_FUNCTION_COLUMNS,
    "filtered_seeds": FILTERED_SEED_COLUMNS,
    "deduped_seeds": DEDUPED_SEED_COLUMNS,
    "seed_concepts": CONCEPT_SCHEMA,
    "instructions": INSTRUCTION_SCHEMA,
    "responses": RESPONSE_SCHEMA,
    "executed_responses": EXECUTED_SCHEMA,
    "library_candidates": CANDIDATE_SCHEMA,
    "decomposed_modules": MODULE_COLUMNS,
    "evolved_responses": EVOLVED_SCHEMA,
    "verified_pairs": VERIFIED_PAIR_COLUMNS,
}
PARTITIONED_STAGES: tuple[str, ...] = tuple(STAGE_SCHEMAS)
