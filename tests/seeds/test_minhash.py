"""MinHash signatures against datasketch, the reference named by the design card."""

from __future__ import annotations

import inspect
import json
import textwrap

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from hypothesis import given, settings
from hypothesis import strategies as st

from amr_dagster.seeds import minhash


def _real_functions() -> list[str]:
    """Sources of real standard-library functions (what the seed stages deduplicate)."""
    sources = []
    for module in (json, textwrap, inspect):
        for _, obj in sorted(vars(module).items()):
            if inspect.isfunction(obj) and obj.__module__ == module.__name__:
                sources.append(inspect.getsource(obj))
    return sources


def _datasketch_signature(text: str, num_perm: int = 256, seed: int = 1, hashfunc=minhash.shingle_hash) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=hashfunc)
    m.update_batch([s.encode("utf-8") for s in minhash.word_shingles(text)])
    return m


def _exact_jaccard(a: str, b: str) -> float:
    sa, sb = minhash.word_shingles(a), minhash.word_shingles(b)
    return len(sa & sb) / len(sa | sb)


def test_signatures_equal_datasketch_hash_values_on_real_code():
    texts = _real_functions()
    assert len(texts) > 50
    ours = minhash.MinHasher(num_perm=256, seed=1).signatures(texts)
    for text, row in zip(texts, ours):
        np.testing.assert_array_equal(row, _datasketch_signature(text).hashvalues)


def test_signatures_equal_datasketch_for_other_num_perm_and_seed():
    texts = _real_functions()[:20]
    ours = minhash.MinHasher(num_perm=64, seed=7, shingle_size=3).signatures(texts)
    for text, row in zip(texts, ours):
        m = MinHash(num_perm=64, seed=7, hashfunc=minhash.shingle_hash)
        m.update_batch([s.encode() for s in minhash.word_shingles(text, 3)])
        np.testing.assert_array_equal(row, m.hashvalues)


def test_a_document_longer_than_one_permutation_block_matches_datasketch():
    words = [f"w{i % 997}_{i % 13}" for i in range(3 * 4096 + 17)]
    long_text = " ".join(words)
    texts = ["def f(x): return x", long_text, "x = 1"]
    ours = minhash.MinHasher().signatures(texts)
    for text, row in zip(texts, ours):
        np.testing.assert_array_equal(row, _datasketch_signature(text).hashvalues)


def test_jaccard_estimates_agree_with_default_datasketch_and_exact_jaccard():
    """Our hashing differs from datasketch's default sha1 but must estimate the same Jaccard."""
    texts = _real_functions()[:40]
    base = texts[0]
    variants = [base.replace("return", "yield", k) for k in range(1, 4)] + texts[1:12]
    ours = minhash.MinHasher().signatures([base, *variants])
    reference = MinHash(num_perm=256)
    reference.update_batch([s.encode() for s in minhash.word_shingles(base)])
    for i, text in enumerate(variants, start=1):
        other = MinHash(num_perm=256)
        other.update_batch([s.encode() for s in minhash.word_shingles(text)])
        ours_estimate = float(minhash.estimated_jaccard(ours[0], ours[i]))
        exact = _exact_jaccard(base, text)
        # 256 permutations: standard error <= 0.032, so 0.15 is far beyond chance
        assert abs(ours_estimate - exact) < 0.15
        assert abs(ours_estimate - reference.jaccard(other)) < 0.15


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab cé_1(),\n\t\u2014\U0001f600", max_size=60) | st.none(), max_size=8))
def test_vectorised_shingle_hashes_equal_the_reference(texts):
    hashes, offsets = minhash.shingle_hashes_batch(texts, 5)
    assert offsets[0] == 0 and offsets[-1] == hashes.size
    for d, text in enumerate(texts):
        expected = {minhash.shingle_hash(s) for s in minhash.word_shingles(text or "")}
        assert set(hashes[offsets[d] : offsets[d + 1]].tolist()) == expected


def test_short_documents_are_one_shingle_and_tokenless_documents_none():
    assert minhash.word_shingles("def f(x):", 5) == {"def f x"}
    assert minhash.word_shingles("a b c d e f", 5) == {"a b c d e", "b c d e f"}
    assert minhash.word_shingles("  ()[] +-  ", 5) == set()
    assert minhash.tokenize("x1 = y_2+3.5") == ["x1", "y_2", "3", "5"]
    sigs = minhash.MinHasher().signatures(["def f(x):", "()", ""])
    assert minhash.has_shingles(sigs).tolist() == [True, False, False]
    assert (sigs[1] == minhash.EMPTY_HASH).all()


def test_token_hash_batch_matches_reference_on_unicode_and_surrogates():
    texts = ["naïve_x = größe + 1", "emoji\U0001f600tail — dash", "bad \udc80 surrogate", ""]
    hashes, counts = minhash.token_hashes_batch(texts)
    expected = [minhash.token_hash(t) for text in texts for t in minhash.tokenize(text)]
    assert hashes.tolist() == expected
    assert counts.tolist() == [len(minhash.tokenize(t)) for t in texts] == [3, 3, 3, 0]  # "—" is a token: non-ASCII counts as a word character


def test_batches_larger_than_one_chunk_match_small_batches():
    texts = _real_functions() * 40  # several MiB: several tokenisation chunks
    hasher = minhash.MinHasher()
    whole = hasher.signatures(texts)
    assert len(minhash._chunks(texts)) > 1
    np.testing.assert_array_equal(whole[: len(texts) // 40], hasher.signatures(texts[: len(texts) // 40]))
    np.testing.assert_array_equal(whole[-3:], hasher.signatures(texts[-3:]))
    np.testing.assert_array_equal(whole, hasher.signatures(texts, workers=1))
    np.testing.assert_array_equal(whole, hasher.signatures(texts, workers=3))


def test_unencodable_text_does_not_fail_the_batch():
    sigs = minhash.MinHasher().signatures(["ok text here", "bad \udc80 surrogate", None])
    assert sigs.shape == (3, 256)
    assert minhash.has_shingles(sigs).tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("threshold", "num_perm"),
    [(t, p) for t in (0.5, 0.7, 0.8, 0.9) for p in (64, 128, 200, 256)],
)
def test_lsh_params_are_datasketch_choice(threshold, num_perm):
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    assert minhash.lsh_params(threshold, num_perm) == (lsh.b, lsh.r)


def test_band_keys_equal_exactly_when_the_band_agrees():
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 2**32, size=(3, 20), dtype=np.uint32)
    sigs[1] = sigs[0]
    sigs[1, 5] ^= 1  # band 1 of 4 (rows 5) differs
    sigs[2, :5] = sigs[2, 5:10]  # same values in bands 0 and 1
    keys = minhash.band_keys(sigs, bands=4, rows=5)
    assert keys.shape == (3, 4) and keys.dtype == np.uint64
    assert (keys[0] == keys[1]).tolist() == [True, False, True, True]
    assert keys[2, 0] != keys[2, 1]  # the band index is part of the key
    with pytest.raises(ValueError):
        minhash.band_keys(sigs, bands=5, rows=5)
