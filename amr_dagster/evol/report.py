"""The numbers that say whether evolution helps, per partition: for metadata and the dataset card.

Definitions (``infra_error`` verdicts are sandbox faults, not answers, so they are left out of
every rate's denominator and counted on their own):

- ``pass_rate_per_sample`` (SelfCodeAlign's): passing direct samples / every sampled direct
  response (parsed or not, minus ``infra_error`` verdicts). What one sample from the generator
  is worth.
- ``pass_rate_per_parsed_sample`` (= ``direct_sample_pass_rate``, its old name): passing direct
  samples / executed (parsed) direct samples. How often code that reached the sandbox passes.
  ``sample_pass_rates`` computes both, for ``executed_responses`` and for this report.
- ``direct_pass_rate``: instructions with at least one passing direct sample (or sibling-tests
  row, ``instructions_passing_by_sibling_tests`` of them) / instructions.
- ``evolved_pass_rate``: passing evolved responses / evolved responses (an evolved response that
  could not be parsed counts as not passing: it is an answer that failed).
- transitions, per evolved response against the direct response it started from
  (its ``parent_id``): ``fail_to_pass``, ``pass_to_fail``, ``pass_to_pass``, ``fail_to_fail``.
- retrieval: per evolved response the best (top-1) similarity among the library modules shown
  to the teacher; mean, median and max over the responses that were shown any.
- ``verified_*``: what ``select_verified`` kept, by origin.
"""

from __future__ import annotations

import statistics
from typing import Any

import polars as pl

from amr_dagster.sandbox.base import Status
from amr_dagster.schemas import ID, PARENT, VERDICT, own_and_sibling_rows
from amr_dagster.outcomes import ACCEPTED, STATUS

PASSED = Status.PASSED.value
INFRA_ERROR = Status.INFRA_ERROR.value


def _rate(num: int, den: int) -> float:
    return round(num / den, 4) if den else 0.0


def sample_pass_rates(samples: int, verdicts: list[str | None]) -> dict[str, Any]:
    """Both pass rates of one set of direct samples (see the module docstring).

    ``samples``: every sampled response (parsed or not); ``verdicts``: the sandbox status of
    each executed (parsed) one.
    """
    infra = sum(v == INFRA_ERROR for v in verdicts)
    executed = len(verdicts) - infra
    passed = sum(v == PASSED for v in verdicts)
    return {
        "direct_samples": samples,
        "direct_samples_executed": executed,
        "direct_samples_infra_error": infra,
        "direct_samples_passed": passed,
        "pass_rate_per_sample": _rate(passed, samples - infra),
        "pass_rate_per_parsed_sample": _rate(passed, executed),
    }


def evol_report(
    direct_executed: pl.DataFrame,
    evolved: pl.DataFrame | None = None,
    evolved_executed: pl.DataFrame | None = None,
    verified: pl.DataFrame | None = None,
    samples: int | None = None,
) -> dict[str, Any]:
    """Flat, JSON-friendly numbers (see the module docstring for each definition).

    ``direct_executed``: the executed SelfCodeAlign samples. ``evolved``: every row of
    ``evolve_responses`` (parsed or not); ``evolved_executed``: the parsed ones after the
    sandbox (only those are executed). Either may be given alone: without ``evolved`` the
    unparsed evolved responses are simply not counted. ``verified``: ``select_verified``'s frame.
    ``samples``: how many direct responses were sampled in all (the ``responses`` rows); without
    it the per-sample rate counts only the executed ones.
    """
    all_rows = direct_executed.to_dicts()
    # A sibling-tests row (one sample's code, others' tests) is not a sample: the per-sample
    # rates count the samples' own verdicts; it does count for its instruction.
    direct_rows = own_and_sibling_rows(direct_executed)[0].to_dicts()
    executed = [r for r in direct_rows if r.get(VERDICT) and r.get(VERDICT) != INFRA_ERROR]
    instructions = {r[PARENT] for r in all_rows}
    passing_instructions = {r[PARENT] for r in all_rows if r.get(VERDICT) == PASSED}
    own_passing = {r[PARENT] for r in direct_rows if r.get(VERDICT) == PASSED}
    verdict_of = {r[ID]: r.get(VERDICT) for r in all_rows}

    verdicts = [r.get(VERDICT) for r in direct_rows if r.get(VERDICT)]
    rates = sample_pass_rates(samples if samples is not None else len(verdicts), verdicts)
    report: dict[str, Any] = {
        "instructions": len(instructions),
        **rates,
        "direct_sample_pass_rate": rates["pass_rate_per_parsed_sample"],
        "direct_pass_rate": _rate(len(passing_instructions), len(instructions)),
        "instructions_passing_by_sibling_tests": len(passing_instructions - own_passing),
    }

    ran = {r[ID]: r.get(VERDICT) for r in evolved_executed.to_dicts()} if evolved_executed is not None else {}
    if evolved is not None:
        evolved_rows = [{**r, VERDICT: ran.get(r[ID])} for r in evolved.to_dicts()]
        parsed = sum(r.get(STATUS) == ACCEPTED for r in evolved_rows)
    else:
        evolved_rows = evolved_executed.to_dicts() if evolved_executed is not None else []
        parsed = len(evolved_rows)
    judged = [r for r in evolved_rows if r.get(VERDICT) != INFRA_ERROR]
    transitions = {"fail_to_pass": 0, "pass_to_fail": 0, "pass_to_pass": 0, "fail_to_fail": 0}
    for r in judged:
        before = verdict_of.get(r.get(PARENT))
        if before == INFRA_ERROR:
            continue
        key = ("pass" if before == PASSED else "fail") + "_to_" + ("pass" if r.get(VERDICT) == PASSED else "fail")
        transitions[key] += 1
    top1 = [max(s) for s in (r.get("retrieved_similarities") or [] for r in evolved_rows) if s]
    report.update(
        {
            "evolved_responses": len(evolved_rows),
            "evolved_parsed": parsed,
            "evolved_infra_error": len(evolved_rows) - len(judged),
            "evolved_passed": sum(r.get(VERDICT) == PASSED for r in judged),
            "evolved_pass_rate": _rate(sum(r.get(VERDICT) == PASSED for r in judged), len(judged)),
            **transitions,
            "retrieval_responses_with_modules": len(top1),
            "retrieval_top1_similarity_mean": round(statistics.fmean(top1), 4) if top1 else None,
            "retrieval_top1_similarity_median": round(statistics.median(top1), 4) if top1 else None,
            "retrieval_top1_similarity_max": round(max(top1), 4) if top1 else None,
        }
    )

    if verified is not None:
        kept = verified.filter(pl.col(STATUS) == ACCEPTED) if verified.height else verified
        origins = kept.get_column("origin").to_list() if kept.height else []
        report.update(
            {
                "verified_pairs": kept.height,
                "verified_evolved": origins.count("evolved"),
                "verified_direct": origins.count("direct"),
                "verified_yield": _rate(kept.height, len(instructions)),
            }
        )
    return report


_CARD_ROWS = [
    ("Instructions", "instructions"),
    ("Direct samples (all sampled responses)", "direct_samples"),
    ("Direct samples executed (parsed)", "direct_samples_executed"),
    ("Pass rate per sample", "pass_rate_per_sample"),
    ("Pass rate per parsed sample", "pass_rate_per_parsed_sample"),
    ("Direct pass rate (any sample passes)", "direct_pass_rate"),
    ("Instructions passing only by sibling tests", "instructions_passing_by_sibling_tests"),
    ("Evolved responses", "evolved_responses"),
    ("Evolved responses parsed", "evolved_parsed"),
    ("Evolved pass rate", "evolved_pass_rate"),
    ("Evolution: failing -> passing", "fail_to_pass"),
    ("Evolution: passing -> failing", "pass_to_fail"),
    ("Evolution: passing -> passing", "pass_to_pass"),
    ("Evolution: failing -> failing", "fail_to_fail"),
    ("Responses shown library modules", "retrieval_responses_with_modules"),
    ("Top-1 retrieval similarity, mean", "retrieval_top1_similarity_mean"),
    ("Top-1 retrieval similarity, median", "retrieval_top1_similarity_median"),
    ("Top-1 retrieval similarity, max", "retrieval_top1_similarity_max"),
    ("Verified pairs", "verified_pairs"),
    ("Verified pairs from evolved responses", "verified_evolved"),
    ("Verified pairs from direct responses", "verified_direct"),
]


def report_markdown(report: dict[str, Any], title: str = "AMR-Evol: direct vs evolved responses") -> str:
    """A Markdown table of ``evol_report`` numbers for the dataset card (absent numbers omitted)."""
    lines = [f"### {title}", "", "| Measure | Value |", "|---|---|"]
    for label, key in _CARD_ROWS:
        if key in report and report[key] is not None:
            lines.append(f"| {label} | {report[key]} |")
    return "\n".join(lines) + "\n"


def combine_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Dataset-level numbers from per-partition reports: counts summed, rates re-weighted.

    Medians cannot be combined from medians; the combined report gives the weighted mean and the
    max of the per-partition top-1 similarities and leaves the median out.
    """
    counts = [
        "instructions", "direct_samples", "direct_samples_executed", "direct_samples_infra_error",
        "direct_samples_passed", "evolved_responses",
        "evolved_parsed", "evolved_passed", "evolved_infra_error", "fail_to_pass", "pass_to_fail", "pass_to_pass",
        "fail_to_fail", "retrieval_responses_with_modules", "verified_pairs", "verified_evolved",
        "verified_direct", "instructions_passing_by_sibling_tests",
    ]
    out: dict[str, Any] = {k: sum(int(r.get(k) or 0) for r in reports) for k in counts}
    out["direct_pass_rate"] = _rate(
        sum((r.get("direct_pass_rate") or 0) * (r.get("instructions") or 0) for r in reports), out["instructions"]
    )
    out["pass_rate_per_sample"] = _rate(out["direct_samples_passed"], out["direct_samples"] - out["direct_samples_infra_error"])
    out["pass_rate_per_parsed_sample"] = _rate(out["direct_samples_passed"], out["direct_samples_executed"])
    out["direct_sample_pass_rate"] = out["pass_rate_per_parsed_sample"]
    judged = out["evolved_responses"] - out["evolved_infra_error"]
    out["evolved_pass_rate"] = _rate(out["evolved_passed"], judged)
    n_sim = out["retrieval_responses_with_modules"]
    means = [(r.get("retrieval_top1_similarity_mean"), r.get("retrieval_responses_with_modules") or 0) for r in reports]
    out["retrieval_top1_similarity_mean"] = (
        round(sum(m * n for m, n in means if m is not None) / n_sim, 4) if n_sim else None
    )
    maxes = [float(m) for r in reports if (m := r.get("retrieval_top1_similarity_max")) is not None]
    out["retrieval_top1_similarity_max"] = max(maxes) if maxes else None
    out["verified_yield"] = _rate(out["verified_pairs"], out["instructions"])
    return out


def report_views(evolved: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every evolved row with ``status`` = parsed or not, the executed ones) for ``evol_report``:
    in ``evolved_responses`` ``status`` means "passed in the sandbox", a parsed row has a sandbox verdict."""
    from amr_dagster.outcomes import REJECTED

    ran = pl.col("sandbox_status").is_not_null()
    parsed = evolved.with_columns(pl.when(ran).then(pl.lit(ACCEPTED)).otherwise(pl.lit(REJECTED)).alias(STATUS))
    return parsed, evolved.filter(ran)


def batch_report(
    executed: pl.DataFrame, evolved: pl.DataFrame, verified: pl.DataFrame, samples: int | None = None
) -> dict[str, Any]:
    """``evol_report`` of one batch from its three stage frames (``samples``: every sample the
    batch drew, parsed or not, for the per-sample pass rate)."""
    parsed, executed_evolved = report_views(evolved)
    return evol_report(executed, parsed, executed_evolved, verified, samples=samples)
