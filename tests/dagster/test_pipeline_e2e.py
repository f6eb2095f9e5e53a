"""The whole graph through real Dagster with real parts: the embedded Gemma 3 270M (small
max_tokens), the real bubblewrap sandbox, the real MiniLM library. Every stage materializes with
its checks passing, and every row of every stage walks back through parent ids to a seed
function, its source file and its line."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from amr_dagster.evol.report import combine_reports, evol_report, report_views
from amr_dagster.outcomes import summarize

ROOT = Path(__file__).resolve().parents[2]

SEEDS = '''
def add_numbers(a: int, b: int) -> int:
    """Return the sum of the two integers a and b."""
    return a + b


def is_even(n: int) -> bool:
    """Return True when the integer n is divisible by two, else False."""
    return n % 2 == 0


def reverse_words(text: str) -> str:
    """Return the words of text in reverse order, joined by single spaces."""
    return " ".join(reversed(text.split()))
'''

STAGES = [
    "seed_functions", "filtered_seeds", "deduped_seeds", "seed_concepts", "instructions", "responses",
    "executed_responses", "decomposed_modules", "library_candidates", "evolved_responses", "verified_pairs",
]


@pytest.mark.llm
@pytest.mark.slow
def test_main_job_end_to_end_with_lineage(tmp_path):
    seeds = tmp_path / "seeds" / "tiny"
    seeds.mkdir(parents=True)
    (seeds / "tiny_math.py").write_text(SEEDS.lstrip("\n"))
    data = tmp_path / "data"
    env = {
        **__import__("os").environ,
        "AMR_HOME": str(tmp_path / "amr"),
        "AMR_DATA_DIR": str(data),
    }
    env.pop("DAGSTER_HOME", None)
    settings = [
        "generation.concepts_max_tokens=32", "generation.instruction_max_tokens=64", "generation.response_max_tokens=160",
        "evolution.decomposition_max_tokens=96", "evolution.evolution_max_tokens=160",
    ]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "amr-dagster"), "run", "--seeds", str(seeds), "--sandbox", "local", "--n-samples", "2", "--llm-backend", "llama_cpp",
         *[arg for setting in settings for arg in ("--set", setting)]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "CHECK FAILED" not in proc.stdout, proc.stdout
    (batch_file,) = (data / "_batches").glob("*.json")
    key = json.loads(batch_file.read_text())["key"]

    frames = {stage: pl.read_parquet(data / stage / f"{key}.parquet") for stage in STAGES}
    seeds_frame = frames["seed_functions"].filter(pl.col("status") == "accepted")
    assert sorted(seeds_frame["name"]) == ["add_numbers", "is_even", "reverse_words"]
    line_of = {r["id"]: (r["source_path"], r["line_start"]) for r in seeds_frame.iter_rows(named=True)}
    assert line_of[seeds_frame.filter(pl.col("name") == "is_even")["id"][0]] == ("tiny_math.py", 6)

    # Walk every generated row back to its seed through parent ids (concepts -> seed, ...).
    parent = {}
    for stage in ("seed_concepts", "instructions", "responses", "executed_responses"):
        for r in frames[stage].iter_rows(named=True):
            parent[r["id"]] = r["parent_id"]

    def seed_of(row_id: str) -> str:
        seen = 0
        while row_id not in line_of:
            row_id = parent[row_id]
            seen += 1
            assert seen < 10
        return row_id

    for stage in ("instructions", "responses", "executed_responses"):
        for r in frames[stage].iter_rows(named=True):
            assert seed_of(r["id"]) == r["seed_id"], (stage, r["id"])

    verified = frames["verified_pairs"]
    assert verified.height == frames["executed_responses"]["parent_id"].n_unique()
    for pair in verified.filter(pl.col("status") == "accepted").iter_rows(named=True):
        source, line = line_of[pair["seed_id"]]
        assert (pair["seed_source_path"], pair["seed_line_start"]) == (source, line)
        assert seed_of(pair["parent_id"] if pair["origin"] == "direct" else pair["direct_id"]) == pair["seed_id"]

    # Evolved rows record the library snapshot they retrieved from.
    assert frames["evolved_responses"]["library_snapshot"].null_count() == 0 or frames["evolved_responses"].height == 0
    dataset = data / "instruction_dataset"
    card = json.loads((dataset / "card.json").read_text())
    # One shard per batch, named by its partition key; the card lists them.
    assert (dataset / "DATASET_CARD.md").exists() and (dataset / "judged" / f"{key}.parquet").exists()
    shard = dataset / "data" / f"{key}.jsonl"
    assert shard.exists() and len(shard.read_text().splitlines()) == card["stats"]["exported"]
    assert card["stages"]["seed_functions"]["accepted"] == 3
    # The export reads verified_pairs once; its counts and the AMR-Evol summary come from that read.
    pairs_counts = summarize(verified)
    assert {k: card["stages"]["verified_pairs"][k] for k in ("rows", "accepted", "rejected")} == {
        k: pairs_counts[k] for k in ("rows", "accepted", "rejected")}
    parsed, executed_evolved = report_views(frames["evolved_responses"])
    expected_evolution = combine_reports([
        evol_report(frames["executed_responses"], parsed, executed_evolved, verified, samples=frames["responses"].height)
    ])
    assert card["evolution"] == json.loads(json.dumps(expected_evolution, default=str))
    # Both pass rates and the profile are in the card.
    assert card["evolution"]["direct_samples"] == frames["responses"].height
    text = (dataset / "DATASET_CARD.md").read_text()
    assert "per sample (every sampled response" in text and "per parsed sample" in text
    assert card["settings"]["profile"]["name"] == "embedded" and "Settings profile: **embedded**" in text
    # Every generated row records its profile (how many rows each stage keeps is the model's call).
    generated = [frames[stage] for stage in ("seed_concepts", "instructions", "responses") if frames[stage].height]
    assert generated and all(set(frame["profile"]) == {"embedded"} for frame in generated)
    assert "instruction dataset:" in proc.stdout and "sandbox pass rate" in proc.stdout
