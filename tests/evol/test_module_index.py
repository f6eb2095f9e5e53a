"""ModuleIndex: exact below the threshold, IVF above it, prefix limits, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amr_dagster.evol.module_index import ModuleIndex, exact_top_k, ivf_cells_for


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int = 32, centres: int = 60, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters, like embeddings of related functions."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((centres, dim))
    return unit(base[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, dim)))


def argsort_top_k(matrix: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Reference: full sort of every score (independent of the index's argpartition path)."""
    return np.argsort(-(queries @ matrix.T), axis=1, kind="stable")[:, :k]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a.tolist(), b.tolist())]))


def test_small_index_is_exact() -> None:
    data = clustered(700, seed=1)
    queries = clustered(40, seed=2)
    index = ModuleIndex(32)
    index.add(data[:300])
    index.add(data[300:])
    assert not index.uses_ann
    result = index.search(queries, 5)
    np.testing.assert_array_equal(result.ids, argsort_top_k(data, queries, 5))
    np.testing.assert_allclose(result.similarities, np.take_along_axis(queries @ data.T, result.ids, axis=1), rtol=1e-5)
    assert (np.diff(result.similarities, axis=1) <= 1e-6).all()  # best first


def test_fewer_entries_than_k_pads_with_minus_one() -> None:
    index = ModuleIndex(8)
    assert index.search(unit(np.ones((1, 8))), 3).ids.tolist() == [[-1, -1, -1]]
    index.add(unit(np.eye(8)[:2]))
    result = index.search(unit(np.ones((1, 8))), 3)
    assert sorted(result.ids[0, :2].tolist()) == [0, 1] and result.ids[0, 2] == -1
    assert np.isnan(result.similarities[0, 2])


def test_wrong_dimension_is_refused() -> None:
    index = ModuleIndex(8)
    with pytest.raises(ValueError):
        index.add(np.zeros((2, 9), dtype=np.float32))
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 9), dtype=np.float32), 1)


def test_ann_path_on_thousands_of_entries_agrees_with_brute_force() -> None:
    data = clustered(6000, seed=3)
    queries = unit(data[::50] + 0.2 * np.random.default_rng(4).standard_normal((120, 32)))
    index = ModuleIndex(32, exact_below=2000)
    for start in range(0, 6000, 1000):
        index.add(data[start:start + 1000])
    assert index.uses_ann and index.nlist == ivf_cells_for(2000)
    truth = argsort_top_k(data, queries, 5)
    assert overlap(index.search(queries, 5).ids, truth) >= 0.9
    # every cell probed and every candidate re-ranked with the float vectors: the IVF path is exact
    index.nprobe_override = index.nlist
    index.rerank_candidates = len(data)
    np.testing.assert_array_equal(index.search(queries, 5).ids, truth)
    # and exact=True bypasses the IVF altogether
    np.testing.assert_array_equal(index.search(queries, 5, exact=True).ids, truth)


def test_limit_sees_only_the_prefix_in_both_modes() -> None:
    data = clustered(5000, seed=5)
    queries = clustered(30, seed=6)
    index = ModuleIndex(32, exact_below=1500)
    index.add(data[:1000])
    index.add(data[1000:])
    assert index.uses_ann
    for limit in (10, 1000, 3000):  # below exact_below: exact on the prefix; above: filtered IVF
        result = index.search(queries, 5, limit=limit)
        assert result.ids.max() < limit and (result.ids >= 0).all()
        if limit < 1500:
            np.testing.assert_array_equal(result.ids, argsort_top_k(data[:limit], queries, 5))
        else:
            assert overlap(result.ids, argsort_top_k(data[:limit], queries, 5)) >= 0.8


def test_index_retrains_when_the_library_has_grown() -> None:
    data = clustered(9000, seed=7)
    index = ModuleIndex(32, exact_below=2000, retrain_growth=4.0)
    index.add(data[:2000])
    first = index.nlist
    index.add(data[2000:7000])  # 7000 < 4 * 2000: incremental add into the same cells
    assert index.nlist == first and index._ivf.ntotal == 7000
    index.add(data[7000:])  # 9000 >= 8000: trained again with more cells
    assert index.nlist == ivf_cells_for(9000) > first and index._ivf.ntotal == 9000


def test_persistence_round_trip_and_incremental_growth(tmp_path: Path) -> None:
    data = clustered(5000, seed=8)
    queries = clustered(25, seed=9)
    index = ModuleIndex(32, exact_below=2000)
    index.add(data[:2500])
    index.save(tmp_path)
    index.add(data[2500:2600])  # small tail: the saved IVF is kept and the tail re-added on load
    index.save(tmp_path)
    loaded = ModuleIndex.load(tmp_path)
    assert len(loaded) == 2600 and loaded.uses_ann
    np.testing.assert_array_equal(loaded.search(queries, 5).ids, index.search(queries, 5).ids)
    manifest = json.loads((tmp_path / "index.json").read_text())
    assert [s["count"] for s in manifest["segments"]] == [2500, 100]
    assert manifest["ivf"]["covers"] == 2500
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))

    loaded.add(data[2600:])
    loaded.save(tmp_path)
    again = ModuleIndex.load(tmp_path)
    assert len(again) == 5000
    np.testing.assert_array_equal(again.search(queries, 5).ids, loaded.search(queries, 5).ids)
    assert len(list(tmp_path.glob("ivf-*.faiss"))) == 1  # the superseded IVF file is gone

    # reopening at an earlier segment boundary (what a library does after a crash mid-commit)
    first = ModuleIndex.load(tmp_path, count=2500)
    assert len(first) == 2500
    assert first.search(queries, 5).ids.max() < 2500
    with pytest.raises(ValueError):
        ModuleIndex.load(tmp_path, count=2550)


def test_exact_top_k_handles_ties_and_large_query_batches() -> None:
    matrix = unit(np.random.default_rng(10).standard_normal((50, 16)))
    queries = unit(np.random.default_rng(11).standard_normal((600, 16)))  # > one 256-query block
    np.testing.assert_array_equal(exact_top_k(matrix, queries, 4).ids, argsort_top_k(matrix, queries, 4))
