"""Library admission of seed functions (``EvolConfig.library_seeds``), on real seeds mined from
real files, run in the real local sandbox."""

from __future__ import annotations

import textwrap
from pathlib import Path

import polars as pl
import pytest

from amr_dagster.evol.admission import SEED_RAN, admit_seeds
from amr_dagster.evol.candidates import from_seed_rows, from_verified_code
from amr_dagster.outcomes import accepted
from amr_dagster.seeds.mining import mine_batch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> pl.DataFrame:
    """Documented functions mined from two real files: the stdlib's textwrap (runs anywhere)
    and this project's outcomes.py (imports polars, which the sandbox's python3 does not have)."""
    import textwrap as stdlib_textwrap

    folder = tmp_path_factory.mktemp("seeds")
    (folder / "textwrap_copy.py").write_text(Path(stdlib_textwrap.__file__).read_text())
    (folder / "outcomes_copy.py").write_text((ROOT / "amr_dagster" / "outcomes.py").read_text())
    mined = accepted(mine_batch(folder, "admission"))
    return mined.filter(pl.col("name").is_in(["dedent", "indent", "with_status", "accepted"]))


@pytest.fixture(scope="module")
def sandbox():
    from amr_dagster.sandbox.auto import open_sandbox

    box = open_sandbox("local", workers=1)
    yield box
    box.close()


def _with_harvested(seed_candidates: pl.DataFrame) -> pl.DataFrame:
    harvested = from_verified_code("def double(x):\n    return 2 * x\n", parent_id="sample-1", batch="admission")
    return pl.concat([seed_candidates, harvested], how="vertical")


def test_executed_admits_seeds_that_run_and_rejects_those_that_do_not(seeds, sandbox):
    candidates = _with_harvested(from_seed_rows(seeds, batch="admission"))
    judged, stats = admit_seeds(candidates, "executed", sandbox)
    by_name = {r["name"]: r for r in judged.iter_rows(named=True)}
    assert by_name["dedent"]["status"] == "accepted" and by_name["dedent"]["verified_how"] == SEED_RAN
    assert by_name["indent"]["status"] == "accepted"
    for name in ("with_status", "accepted"):  # `import polars` fails inside the sandbox
        assert by_name[name]["reject_reason"] == "seed_failed_to_run: failed", by_name[name]
        assert by_name[name]["verified"] is False
    assert by_name["double"]["status"] == "accepted"  # harvested rows are not judged again
    assert stats == {"library_seeds": "executed", "seeds_judged": 4, "seeds_admitted": 2}
    assert judged.height == candidates.height


def test_exclude_and_unverified(seeds):
    candidates = _with_harvested(from_seed_rows(seeds, batch="admission"))
    excluded, _ = admit_seeds(candidates, "exclude")
    assert set(accepted(excluded)["name"]) == {"double"}
    assert set(excluded.filter(pl.col("source") == "seed")["reject_reason"]) == {"seed_not_executed"}
    unchanged, _ = admit_seeds(candidates, "unverified")
    assert unchanged.equals(candidates)
    with pytest.raises(ValueError, match="executed, exclude, unverified"):
        admit_seeds(candidates, "sometimes")
