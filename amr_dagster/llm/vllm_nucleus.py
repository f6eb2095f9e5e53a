"""The vLLM v1 logits processor that applies ``nucleus.nucleus_mask`` (exact top-p, no vocabulary sort).

It is argmax-invariant, so vLLM runs it after temperature, exactly where its own top-p sits.
``vllm_engine`` loads it by name (``NUCLEUS_PROCESSOR``) on the CPU build, sends vLLM ``top_p=1`` and the
request's real ``p`` in ``extra_args[nucleus.EXTRA_ARG]``; rows without that key are untouched.
This module imports vLLM, so only the engine (and its engine core process) imports it.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from amr_dagster.llm.nucleus import EXTRA_ARG, nucleus_mask

class NucleusLogitsProcessor(LogitsProcessor):
    """Per-request top-p from ``extra_args[EXTRA_ARG]``, keyed by the request's batch slot."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.p: dict[int, float] = {}  # batch slot -> top-p, only for requests that carry one

    def is_argmax_invariant(self) -> bool:
        return True

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if not batch_update:
            return
        for slot in batch_update.removed:
            self.p.pop(slot, None)
        for slot, params, _, _ in batch_update.added:
            value = (getattr(params, "extra_args", None) or {}).get(EXTRA_ARG)
            if value is not None and float(value) < 1.0:
                self.p[slot] = float(value)
            else:
                self.p.pop(slot, None)
        for a, b, direction in batch_update.moved:
            pa, pb = self.p.pop(a, None), self.p.pop(b, None)
            if pa is not None:
                self.p[b] = pa
            if direction == MoveDirectionality.SWAP and pb is not None:
                self.p[a] = pb

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        slots = [s for s in sorted(self.p) if s < logits.shape[0]]
        if not slots:
            return logits
        p = torch.tensor([self.p[s] for s in slots], dtype=logits.dtype, device=logits.device)
        if len(slots) == logits.shape[0]:  # every row samples with top-p (the usual batch): in place
            return nucleus_mask(logits, p)
        rows = torch.tensor(slots, dtype=torch.long, device=logits.device)
        logits[rows] = nucleus_mask(logits[rows], p)
        return logits
