"""Exact temperature + top-p sampling by partial top-k (``llm.nucleus``) against the full sort it replaces."""

from __future__ import annotations

import pytest
import torch

import amr_dagster.llm.nucleus as nucleus
from amr_dagster.llm.nucleus import candidate_nucleus, nucleus_sample, sorted_nucleus, vllm_sampling


def support(index: torch.Tensor, weights: torch.Tensor) -> list[set[int]]:
    """Each row's nucleus as a set of token ids."""
    return [set(i[w > 0].tolist()) for i, w in zip(index, weights)]


def reference(logits: torch.Tensor, t: torch.Tensor, p: torch.Tensor) -> list[set[int]]:
    return support(*sorted_nucleus(logits / t.unsqueeze(1), p))


def test_same_nucleus_as_the_full_sort_on_peaked_rows_and_flat_rows_fall_back():
    torch.manual_seed(0)
    logits = torch.randn(12, 50_000)
    logits[:6] *= 12  # peaked rows: the nucleus is a few tokens (fast path)
    # flat rows: the nucleus holds thousands of tokens, beyond the candidates (fallback path)
    p = torch.tensor([0.95, 0.5, 0.99, 0.1, 0.9, 0.95] + [0.95, 0.5, 0.99, 0.6, 0.9, 0.95])
    t = torch.tensor([0.4, 1.0, 0.7] * 2 + [1.0] * 6)
    index, weights, covered = candidate_nucleus(logits, t, p, candidates=64)
    assert covered[:6].all() and not covered[6:].any()
    assert support(index[:6], weights[:6]) == reference(logits[:6], t[:6], p[:6])
    # Inside the nucleus the weights are the softmax's, up to one factor per row.
    _, probs = sorted_nucleus(logits[:6] / t[:6].unsqueeze(1), p[:6])
    head = probs[:, :64]
    assert torch.allclose(weights[:6] / weights[:6].sum(1, keepdim=True), head / head.sum(1, keepdim=True), atol=1e-6)


def test_nucleus_is_the_smallest_prefix_reaching_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    one = torch.tensor([1.0])

    def kept(row: torch.Tensor, p: float) -> set[int]:
        return support(*candidate_nucleus(row, one, torch.tensor([p]))[:2])[0]

    assert kept(logits, 0.8) == {0, 1}
    assert kept(logits, 0.81) == {0, 1, 2}
    assert kept(logits, 1e-6) == {0}
    assert kept(logits, 0.0) == {0}  # a top-p of 0 is greedy, not an empty nucleus (no failed draw)
    assert nucleus_sample(logits, one, torch.tensor([0.0])).tolist() == [0]
    assert support(*sorted_nucleus(logits, torch.tensor([0.0]))) == [{0}]
    assert kept(logits[:, [2, 0, 3, 1]], 0.8) == {1, 3}  # order in the vocabulary does not matter


def test_draws_follow_the_nucleus_distribution():
    """Probabilities 0.5/0.3/0.15/0.05, top-p 0.8 at temperature 1: only tokens 0 and 1, in
    proportion 5:3; at temperature 0.5 the squared weights 25:9 (and still only those two)."""
    torch.manual_seed(3)
    rows = 20_000
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().repeat(rows, 1)
    p = torch.full((rows,), 0.8)
    for t, share in ((1.0, 5 / 8), (0.5, 25 / 34)):
        tokens = nucleus_sample(logits, torch.full((rows,), t), p)
        assert set(tokens.tolist()) == {0, 1}
        observed = (tokens == 0).float().mean().item()
        assert abs(observed - share) < 5 * (share * (1 - share) / rows) ** 0.5


def test_fallback_rows_draw_inside_the_full_sort_nucleus():
    torch.manual_seed(4)
    flat = torch.randn(4, 20_000)  # the nucleus holds thousands of tokens
    t, p = torch.full((4,), 1.0), torch.full((4,), 0.5)
    allowed = reference(flat, t, p)
    for _ in range(5):
        tokens = nucleus_sample(flat, t, p, candidates=64)
        assert all(tok in allowed[r] for r, tok in enumerate(tokens.tolist()))


def test_same_nucleus_on_rows_whose_tail_underflows():
    """Real logits span hundreds of units after temperature (x@W of Gemma's 262k-token head at
    T=0.4): most of exp(logit - max) is below float32's normal range. The clamped denominator
    must give the full sort's nucleus there too, fast path and fallback alike."""
    torch.manual_seed(1)
    logits = torch.randn(8, 50_000) * 24
    logits[4:, :5_000] = logits[4:, :5_000].abs() * 0.0004 + 160  # flat heads of 5,000 near-equal tokens
    p = torch.tensor([0.95, 0.5, 0.99, 0.2] * 2)
    t = torch.full((8,), 0.4)
    index, weights, covered = candidate_nucleus(logits, t, p, candidates=256)
    assert covered[:4].all() and not covered[4:].any()  # the flat heads fall back
    assert support(index[:4], weights[:4]) == reference(logits[:4], t[:4], p[:4])
    tokens = nucleus_sample(logits, t, p)
    assert all(tok in allowed for tok, allowed in zip(tokens.tolist(), reference(logits, t, p)))


def test_peaked_rows_need_no_pass_over_the_vocabulary(monkeypatch):
    """Where the candidates' own mass bounds the denominator tightly enough, the nucleus comes
    from the candidates alone; a heavy tail of tokens just below them (the bounds disagree)
    takes the exact denominator. Both agree with the full sort."""
    torch.manual_seed(2)
    peaked = torch.randn(6, 50_000) * 12  # the 256th candidate ~50 below the top after T=0.4, as on Gemma
    p = torch.tensor([0.95, 0.5, 0.99, 0.1, 0.9, 0.95])
    t = torch.full((6,), 0.4)

    def no_full_pass(*_):
        raise AssertionError("a peaked row paid a pass over the whole vocabulary")

    with monkeypatch.context() as patched:
        patched.setattr(nucleus, "_denominator", no_full_pass)
        index, weights, covered = candidate_nucleus(peaked, t, p)
    assert covered.all() and support(index, weights) == reference(peaked, t, p)

    heavy_tail = torch.full((1, 50_000), 5.0)
    heavy_tail[0, :3] = torch.tensor([10.0, 9.0, 8.0])  # 0.45% of the mass; 49,997 tokens hold the rest
    real, calls = nucleus._denominator, []
    monkeypatch.setattr(nucleus, "_denominator", lambda *a: calls.append(1) or real(*a))
    one = torch.tensor([1.0])
    for p_tail in (0.001, 0.95):  # inside the three heads / far past the candidates
        index, weights, covered = candidate_nucleus(heavy_tail, one, torch.tensor([p_tail]), candidates=64)
        if covered.all():
            assert support(index, weights) == reference(heavy_tail, one, torch.tensor([p_tail]))
    assert calls


@pytest.mark.parametrize(
    "temperature, top_p, expected",
    [
        (0.7, 0.95, (0.0, 1.0, {"amr_top_p": 0.95, "amr_temperature": 0.7})),
        (0.0, 0.95, (0.0, 0.95, None)),
        (0.7, 1.0, (0.7, 1.0, None)),
    ],
)
def test_only_sampled_top_p_requests_go_to_the_processor(temperature, top_p, expected):
    assert vllm_sampling(temperature, top_p) == expected
