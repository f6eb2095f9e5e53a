"""Global near-dedup: invariants (hypothesis), cross-batch behaviour, the store's guarantees."""

from __future__ import annotations

import inspect
import json
import multiprocessing
import string
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amr_dagster.seeds import minhash
from amr_dagster.seeds.dedup import (
    DUPLICATE_JACCARD,
    DUPLICATE_OF,
    DedupConfig,
    SignatureSettingsMismatch,
    SignatureStore,
    dedup_batch,
)
from amr_dagster.outcomes import ACCEPTED, REJECTED, summarize

CONFIG = DedupConfig()


def _frame(texts: list[str], prefix: str = "r") -> pl.DataFrame:
    return pl.DataFrame({"id": [f"{prefix}{i}" for i in range(len(texts))], "code": texts})


def _real_functions() -> list[str]:
    sources = []
    for module in (json.decoder, json.encoder, textwrap, string, inspect):
        for _, obj in sorted(vars(module).items()):
            if inspect.isfunction(obj) and obj.__module__ == module.__name__:
                sources.append(inspect.getsource(obj))
    return sources


def _edited(source: str, k: int) -> str:
    """A near copy: one extra statement appended to a long-enough function."""
    return source + f"    _edited_marker_{k} = {k}\n"


def _exact_jaccard(a: str, b: str) -> float:
    sa, sb = minhash.word_shingles(a), minhash.word_shingles(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


# ------------------------------------------------------------------ invariants (hypothesis)

WORDS = st.sampled_from(["alpha", "beta", "gamma", "delta", "eps", "zeta", "x", "y", "(", ")"])
DOC = st.lists(WORDS, max_size=14).map(" ".join)


@st.composite
def batches_with_repeats(draw):
    """Documents drawn from a small pool (exact repeats) plus word-level edits (near repeats)."""
    pool = draw(st.lists(DOC, min_size=1, max_size=6))
    texts = []
    for _ in range(draw(st.integers(0, 16))):
        base = draw(st.sampled_from(pool))
        if draw(st.booleans()):
            words = base.split(" ")
            words.insert(draw(st.integers(0, len(words))), draw(WORDS))
            base = " ".join(words)
        texts.append(base)
    return texts


def _check_invariants(result: pl.DataFrame, texts: list[str], stored_ids: set[str]) -> None:
    assert result.height == len(texts)
    assert result.get_column("code").to_list() == texts  # same rows, same order
    summary = summarize(result)
    assert summary["accepted"] + summary["rejected"] == len(texts)
    ids = result.get_column("id").to_list()
    status = result.get_column("status").to_list()
    kept_of = result.get_column(DUPLICATE_OF).to_list()
    position = {i: n for n, i in enumerate(ids)}
    accepted_texts = [t for t, s in zip(texts, status) if s == ACCEPTED]
    assert len(accepted_texts) == len(set(accepted_texts)), "an exact duplicate survived"
    for row, (s, kept, reason) in enumerate(zip(status, kept_of, result.get_column("reject_reason").to_list())):
        if s == ACCEPTED:
            assert kept is None and reason is None
            continue
        assert reason in (f"exact_duplicate: {kept}", f"near_duplicate: {kept}")
        if kept in position:  # a kept copy of this batch: arrived earlier and survived
            assert position[kept] < row and status[position[kept]] == ACCEPTED
        else:
            assert kept in stored_ids
    # Completeness w.r.t. LSH: no two survivors share a band and reach the threshold.
    sigs = CONFIG.hasher().signatures(texts)
    keys = minhash.band_keys(sigs, CONFIG.bands, CONFIG.rows)
    shingled = minhash.has_shingles(sigs)
    survivors = [i for i, s in enumerate(status) if s == ACCEPTED and shingled[i]]
    for a_pos, a in enumerate(survivors):
        for b in survivors[a_pos + 1 :]:
            if (keys[a] == keys[b]).any():
                assert minhash.estimated_jaccard(sigs[a], sigs[b]) < CONFIG.threshold


@settings(max_examples=40, deadline=None)
@given(batches_with_repeats())
def test_invariants_within_one_batch(texts):
    with tempfile.TemporaryDirectory() as tmp:
        result, stats = dedup_batch(_frame(texts), "b1", SignatureStore(Path(tmp)), CONFIG)
        _check_invariants(result, texts, stored_ids=set())
        if texts:
            assert result.get_column("status")[0] == ACCEPTED  # the first arrival always survives
        assert stats["accepted"] + stats["rejected"] == len(texts)
        # Decided by arrival order only: a fresh store gives the same answer.
        with tempfile.TemporaryDirectory() as tmp2:
            again, _ = dedup_batch(_frame(texts), "b1", SignatureStore(Path(tmp2)), CONFIG)
        assert again.equals(result)


@settings(max_examples=25, deadline=None)
@given(batches_with_repeats(), batches_with_repeats())
def test_invariants_across_batches_and_rerun_changes_nothing(first, second):
    with tempfile.TemporaryDirectory() as tmp:
        store = SignatureStore(Path(tmp))
        r1, _ = dedup_batch(_frame(first, "a"), "one", store, CONFIG)
        r2, _ = dedup_batch(_frame(second, "b"), "two", store, CONFIG)
        stored_one = set(r1.filter(pl.col("status") == ACCEPTED).get_column("id").to_list())
        _check_invariants(r2, second, stored_ids=stored_one)
        # every exact copy of a first-batch survivor is rejected in the second batch
        kept_first = set(r1.filter(pl.col("status") == ACCEPTED).get_column("code").to_list())
        assert not kept_first & set(r2.filter(pl.col("status") == ACCEPTED).get_column("code").to_list())
        file_one = store.file_of("one").read_bytes()
        r1_again, _ = dedup_batch(_frame(first, "a"), "one", store, CONFIG)
        r2_again, _ = dedup_batch(_frame(second, "b"), "two", store, CONFIG)
        assert r1_again.equals(r1) and r2_again.equals(r2)
        assert store.batches() == ["one", "two"]
        assert store.file_of("one").read_bytes() == file_one


@settings(max_examples=25, deadline=None)
@given(batches_with_repeats(), st.integers(0, 16), st.integers(0, 16))
def test_splitting_a_batch_keeps_the_same_survivors(texts, cut_a, cut_b):
    """Arrival order is ledger order then row order: cutting a batch in pieces changes no decision."""
    lo, hi = sorted((min(cut_a, len(texts)), min(cut_b, len(texts))))
    frame = _frame(texts)
    with tempfile.TemporaryDirectory() as tmp:
        whole, _ = dedup_batch(frame, "whole", SignatureStore(Path(tmp) / "one"), CONFIG)
        store = SignatureStore(Path(tmp) / "three")
        pieces = [dedup_batch(frame[a:b], f"piece{a}", store, CONFIG)[0] for a, b in ((0, lo), (lo, hi), (hi, len(texts)))]
    assert pl.concat(pieces).get_column("status").to_list() == whole.get_column("status").to_list()


# ------------------------------------------------------------------ concrete behaviour on real code


def test_near_copies_of_real_functions_are_rejected_naming_the_first():
    sources = [s for s in _real_functions() if len(minhash.word_shingles(s)) > 60][:30]
    assert len(sources) >= 20
    texts = sources + [_edited(s, k) for k, s in enumerate(sources)]
    with tempfile.TemporaryDirectory() as tmp:
        result, stats = dedup_batch(_frame(texts), "b", SignatureStore(Path(tmp)), CONFIG)
    n = len(sources)
    assert result.get_column("status").to_list() == [ACCEPTED] * n + [REJECTED] * n
    assert result.get_column(DUPLICATE_OF).to_list()[n:] == [f"r{i}" for i in range(n)]
    assert stats["near_within"] == n and stats["exact_within"] == 0
    for i in range(n):
        estimate = result.get_column(DUPLICATE_JACCARD)[n + i]
        assert estimate >= CONFIG.threshold
        assert abs(estimate - _exact_jaccard(texts[i], texts[n + i])) < 0.12


def test_second_batch_is_deduplicated_against_the_first_and_not_the_reverse():
    sources = [s for s in _real_functions() if len(minhash.word_shingles(s)) > 60][:20]
    first = sources[:10]
    second = [_edited(s, 1) for s in sources[:5]] + [sources[0]] + sources[10:20]
    with tempfile.TemporaryDirectory() as tmp:
        store = SignatureStore(Path(tmp))
        r1, s1 = dedup_batch(_frame(first, "a"), "one", store, CONFIG)
        r2, s2 = dedup_batch(_frame(second, "b"), "two", store, CONFIG)
        assert s1["accepted"] == 10 and s2["earlier_batches"] == 1
        reasons = r2.get_column("reject_reason").to_list()
        assert reasons[:5] == [f"near_duplicate: a{i}" for i in range(5)]
        assert reasons[5] == "exact_duplicate: a0"
        assert reasons[6:] == [None] * 10
        assert s2["near_cross"] == 5 and s2["exact_cross"] == 1
        # Batch one comes first in the ledger: re-running it never sees batch two.
        r1_again, s1_again = dedup_batch(_frame(first, "a"), "one", store, CONFIG)
        assert r1_again.equals(r1) and s1_again["earlier_batches"] == 0
        # Only survivors are stored, with their full signatures.
        stored = store.load("two")
        assert stored.get_column("id").to_list() == [f"b{i}" for i in range(6, 16)]
        np.testing.assert_array_equal(stored.get_column("signature").to_numpy(), CONFIG.hasher().signatures(sources[10:20]))


def _with_changes(tokens: list[str], positions: range, tag: str) -> list[str]:
    return [f"{tag}{i}" if i in positions else t for i, t in enumerate(tokens)]


def test_a_chain_keeps_rows_whose_only_match_was_rejected():
    """A ~ B and B ~ C but not A ~ C: B goes (it duplicates A), C stays (its only match B is gone)."""
    a = [f"w{i}" for i in range(200)]
    b = _with_changes(a, range(10, 60, 10), "b")  # 5 isolated edits: J(a, b) = 171/221 = 0.77
    c = _with_changes(b, range(110, 160, 10), "c")  # 5 more: J(b, c) = 0.77, J(a, c) = 146/246 = 0.59
    texts = [" ".join(t) for t in (a, b, c)]
    assert abs(_exact_jaccard(texts[0], texts[1]) - 171 / 221) < 1e-9
    with tempfile.TemporaryDirectory() as tmp:
        result, stats = dedup_batch(_frame(texts), "b", SignatureStore(Path(tmp)), CONFIG)
    assert result.get_column("reject_reason").to_list() == [None, "near_duplicate: r0", None]
    assert stats["verified_pairs_within"] == 2  # (a, b) and (b, c) both verified, only one applied


def test_a_row_matching_two_earlier_batches_names_the_best_stored_match():
    a = [f"w{i}" for i in range(200)]
    b = _with_changes(a, range(10, 60, 10), "b")
    c = _with_changes(b, range(110, 160, 10), "c")
    first, middle, third = (" ".join(t) for t in (a, c, b))  # b is between a and c
    with tempfile.TemporaryDirectory() as tmp:
        store = SignatureStore(Path(tmp))
        dedup_batch(_frame([first], "x"), "one", store, CONFIG)
        r2, _ = dedup_batch(_frame([middle], "y"), "two", store, CONFIG)
        assert r2.get_column("status").to_list() == [ACCEPTED]  # J(a, c) = 0.59
        r3, s3 = dedup_batch(_frame(["unrelated tokens only here", third], "z"), "three", store, CONFIG)
    sigs = CONFIG.hasher().signatures([first, middle, third])
    to_first = float(minhash.estimated_jaccard(sigs[2], sigs[0]))
    to_middle = float(minhash.estimated_jaccard(sigs[2], sigs[1]))
    expected = "x0" if to_first >= to_middle else "y0"
    assert r3.get_column("reject_reason").to_list() == [None, f"near_duplicate: {expected}"]
    assert r3.get_column(DUPLICATE_JACCARD)[1] == max(to_first, to_middle)
    assert s3["earlier_batches"] == 2 and s3["verified_pairs_cross"] == 2


def test_unrelated_similar_looking_code_survives():
    texts = [
        "def add(a, b):\n    return a + b\n",
        "def sub(a, b):\n    return a - b\n",  # same tokens but one: shingles differ (J well below 0.7)
        "def mul(first, second):\n    total = first * second\n    return total\n",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = dedup_batch(_frame(texts), "b", SignatureStore(Path(tmp)), CONFIG)
    assert result.get_column("status").to_list() == [ACCEPTED] * 3


def test_short_and_tokenless_documents():
    texts = ["f(x)", "f(x)", "g(x)", "()", "[]", "()", "a b c d", "a b c e"]
    with tempfile.TemporaryDirectory() as tmp:
        result, stats = dedup_batch(_frame(texts), "b", SignatureStore(Path(tmp)), CONFIG)
    assert result.get_column("reject_reason").to_list() == [
        None, "exact_duplicate: r0", None, None, None, "exact_duplicate: r3", None, None,
    ]
    assert stats["without_shingles"] == 3


def test_copies_of_a_rejected_row_name_the_kept_copy():
    base = [s for s in _real_functions() if len(minhash.word_shingles(s)) > 60][0]
    texts = [base, _edited(base, 1), _edited(base, 1)]
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = dedup_batch(_frame(texts), "b", SignatureStore(Path(tmp)), CONFIG)
    assert result.get_column("reject_reason").to_list() == [None, "near_duplicate: r0", "near_duplicate: r0"]
    assert result.get_column(DUPLICATE_JACCARD)[1] == result.get_column(DUPLICATE_JACCARD)[2]


def test_empty_batch_is_recorded_and_keeps_the_schema():
    with tempfile.TemporaryDirectory() as tmp:
        store = SignatureStore(Path(tmp))
        empty = pl.DataFrame({"id": [], "code": []}, schema={"id": pl.String, "code": pl.String})
        result, stats = dedup_batch(empty, "empty", store, CONFIG)
        assert result.height == 0 and stats["rows"] == 0
        assert {"status", "reject_reason", DUPLICATE_OF, DUPLICATE_JACCARD} <= set(result.columns)
        r2, s2 = dedup_batch(_frame(["def f(a):\n    return a\n"]), "next", store, CONFIG)
        assert store.batches() == ["empty", "next"] and s2["earlier_batches"] == 1
        assert r2.get_column("status").to_list() == [ACCEPTED]


def test_settings_mismatch_is_a_clear_error():
    with tempfile.TemporaryDirectory() as tmp:
        store = SignatureStore(Path(tmp))
        dedup_batch(_frame(["def f(a):\n    return a\n"]), "one", store, CONFIG)
        for other in (DedupConfig(num_perm=128), DedupConfig(shingle_size=3), DedupConfig(threshold=0.9), DedupConfig(seed=2)):
            with pytest.raises(SignatureSettingsMismatch, match="another signature family"):
                dedup_batch(_frame(["x"]), "two", store, other)
        assert store.batches() == ["one"]


def test_missing_columns_are_reported():
    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(KeyError, match="code"):
            dedup_batch(pl.DataFrame({"id": ["a"], "text": ["x"]}), "b", SignatureStore(Path(tmp)), CONFIG)


def _dedup_in_child(root: str, batch: str, texts: list[str]) -> None:
    dedup_batch(_frame(texts, batch), batch, SignatureStore(Path(root)), CONFIG)


def test_two_processes_share_the_store_safely():
    """Same texts deduplicated by two processes at once: whichever the ledger puts second loses all."""
    texts = [s for s in _real_functions() if len(minhash.word_shingles(s)) > 20][:40]
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        children = [ctx.Process(target=_dedup_in_child, args=(tmp, name, texts)) for name in ("p", "q")]
        for child in children:
            child.start()
        for child in children:
            child.join(120)
            assert child.exitcode == 0
        store = SignatureStore(Path(tmp))
        first, second = store.batches()
        assert {first, second} == {"p", "q"}
        assert store.load(first).height == 40
        assert store.load(second).height == 0


def test_batch_names_with_any_characters_and_a_missing_earlier_file():
    with tempfile.TemporaryDirectory() as tmp:
        store = SignatureStore(Path(tmp))
        odd = "seeds/../a b.py@3f2a:ü"
        dedup_batch(_frame(["def f(a):\n    return a\n"]), odd, store, CONFIG)
        path = store.file_of(odd)
        assert path.parent == Path(tmp) / "batches" and path.is_file()
        assert store.batches() == [odd]
        path.unlink()
        with pytest.raises(FileNotFoundError, match="missing"):
            dedup_batch(_frame(["x"]), "next", store, CONFIG)
