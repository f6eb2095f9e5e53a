"""Embedders: the real all-MiniLM-L6-v2 (bundled weights, CPU) and the hashing stand-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amr_dagster.evol.embeddings import HashingEmbedder, SentenceEmbedder, l2_normalise, model_checksum


@pytest.fixture(scope="module")
def minilm() -> SentenceEmbedder:
    return SentenceEmbedder()


def test_minilm_puts_similar_descriptions_closer_than_unrelated_ones(minilm: SentenceEmbedder) -> None:
    texts = [
        "Return the sum of two integers.",
        "Add two numbers together and return the result.",
        "Open a TCP connection to a remote host and send a greeting.",
        "parse_date(text: str) -> datetime\nParse an ISO 8601 date string into a datetime.",
        "to_datetime(value: str) -> datetime\nConvert a timestamp string like 2024-01-31 to a datetime object.",
    ]
    vectors = minilm.embed(texts, batch_size=2)
    assert vectors.shape == (5, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert sims[3, 4] > sims[3, 0] + 0.2
    assert sims[3, 4] > sims[3, 2] + 0.2


def test_minilm_is_deterministic_and_identified_by_weights(minilm: SentenceEmbedder) -> None:
    first = minilm.embed(["def add(a, b): return a + b"])
    again = minilm.embed(["def add(a, b): return a + b", "something else entirely"])[:1]
    np.testing.assert_allclose(first, again, atol=1e-5)
    assert minilm.model_id.startswith("all-MiniLM-L6-v2@sha256:")
    assert minilm.model_id == SentenceEmbedder().model_id
    assert minilm.dim == 384
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_is_loaded_once_per_process(minilm: SentenceEmbedder) -> None:
    other = SentenceEmbedder()
    assert other._model() is minilm._model()


def test_token_cap_changes_the_model_id_and_the_vectors(minilm: SentenceEmbedder) -> None:
    capped = SentenceEmbedder(max_seq_length=8)
    assert capped.model_id != minilm.model_id and capped.model_id.endswith("/len8")
    long_text = "Compute the moving average of a sequence of floats over a sliding window of width k, " * 3
    full, short = minilm.embed([long_text]), capped.embed([long_text])
    assert float(full[0] @ short[0]) < 0.999
    # the cap is per embedder: the shared model is back at its own cap afterwards
    np.testing.assert_allclose(minilm.embed([long_text]), full, atol=1e-5)


def test_model_checksum_tracks_file_content(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "README.md").write_text("docs")
    before = model_checksum(tmp_path)
    (tmp_path / "README.md").write_text("other docs")  # does not change outputs
    assert model_checksum(tmp_path) == before
    (tmp_path / "config.json").write_text('{"hidden": 1}')
    assert model_checksum(tmp_path) != before


def test_hashing_embedder_is_deterministic_normalised_and_word_sensitive() -> None:
    embedder = HashingEmbedder(dim=128)
    vectors = embedder.embed(["parse_date from string", "parseDate from a string", "socket connect host"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, HashingEmbedder(dim=128).embed(["parse_date from string", "parseDate from a string", "socket connect host"]))
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.model_id != HashingEmbedder(dim=64).model_id


def test_l2_normalise_keeps_zero_rows_zero() -> None:
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32
