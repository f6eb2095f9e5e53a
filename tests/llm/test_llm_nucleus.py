"""Exact top-p by partial top-k (``llm.nucleus``) against the full sort it replaces."""

from __future__ import annotations

import torch

from amr_dagster.llm.nucleus import _sorted_nucleus, nucleus_mask


def kept(logits: torch.Tensor) -> torch.Tensor:
    return ~torch.isinf(logits)


def test_same_nucleus_as_the_full_sort_on_peaked_and_flat_rows():
    torch.manual_seed(0)
    logits = torch.randn(12, 50_000)
    logits[:6] *= 12  # peaked rows: the nucleus is a few tokens (fast path)
    # flat rows: the nucleus holds thousands of tokens, beyond the candidates (fallback path)
    p = torch.tensor([0.95, 0.5, 0.99, 0.1, 0.9, 0.95] * 2)
    fast = nucleus_mask(logits.clone(), p, candidates=64)
    assert torch.equal(kept(fast), kept(_sorted_nucleus(logits.clone(), p)))
    sizes = kept(fast).sum(dim=1)
    assert (sizes[:6] < 64).all() and (sizes[6:] > 64).all()
    # Kept logits are untouched.
    assert torch.equal(fast[kept(fast)], logits[kept(fast)])


def test_nucleus_is_the_smallest_prefix_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert kept(nucleus_mask(logits.clone(), torch.tensor([0.8]))).tolist() == [[True, True, False, False]]
    assert kept(nucleus_mask(logits.clone(), torch.tensor([0.81]))).tolist() == [[True, True, True, False]]
    assert kept(nucleus_mask(logits.clone(), torch.tensor([1e-6]))).tolist() == [[True, False, False, False]]
    # Order in the vocabulary does not matter.
    shuffled = logits[:, [2, 0, 3, 1]]
    assert kept(nucleus_mask(shuffled.clone(), torch.tensor([0.8]))).tolist() == [[False, True, False, True]]


def test_same_nucleus_on_rows_whose_tail_underflows():
    """Real logits span hundreds of units after temperature (x@W of Gemma's 262k-token head at
    T=0.4): most of exp(logit - max) is below float32's normal range. The clamped denominator
    must give the full sort's nucleus there too, fast path and fallback alike."""
    torch.manual_seed(1)
    logits = torch.randn(8, 50_000) * 60
    logits[4:, :5_000] = logits[4:, :5_000].abs() * 0.001 + 400  # flat heads of 5,000 near-equal tokens
    p = torch.tensor([0.95, 0.5, 0.99, 0.2] * 2)
    fast = nucleus_mask(logits.clone(), p, candidates=256)
    assert torch.equal(kept(fast), kept(_sorted_nucleus(logits.clone(), p)))
    assert (kept(fast).sum(dim=1)[4:] > 256).all()  # the fallback rows did fall back


def test_peaked_rows_need_no_pass_over_the_vocabulary(monkeypatch):
    """Where the candidates' own mass bounds the denominator tightly enough, the nucleus comes
    from the candidates alone; a heavy tail of tokens just below them (the bounds disagree)
    takes the exact denominator and, here, the full sort. Both agree with the full sort."""
    import amr_dagster.llm.nucleus as nucleus

    torch.manual_seed(2)
    peaked = torch.randn(6, 50_000) * 30  # the 256th candidate ~50 below the top, as after T=0.4 on Gemma
    p = torch.tensor([0.95, 0.5, 0.99, 0.1, 0.9, 0.95])

    def no_full_pass(*_):
        raise AssertionError("a peaked row paid a pass over the whole vocabulary")

    with monkeypatch.context() as patched:
        patched.setattr(nucleus, "_denominator", no_full_pass)
        fast = nucleus_mask(peaked.clone(), p, candidates=256)
    assert torch.equal(kept(fast), kept(_sorted_nucleus(peaked.clone(), p)))

    heavy_tail = torch.full((1, 50_000), 5.0)
    heavy_tail[0, :3] = torch.tensor([10.0, 9.0, 8.0])  # 0.45% of the mass; 49,997 tokens hold the rest
    calls = []
    monkeypatch.setattr(nucleus, "_denominator", lambda *a: calls.append(1) or nucleus_denominator(*a))
    out = nucleus_mask(heavy_tail.clone(), torch.tensor([0.95]), candidates=64)
    assert calls and torch.equal(kept(out), kept(_sorted_nucleus(heavy_tail.clone(), torch.tensor([0.95]))))


from amr_dagster.llm.nucleus import _denominator as nucleus_denominator  # noqa: E402  (the real one, for the spy above)
