"""The vLLM v1 logits processor that draws a request's token with ``nucleus.nucleus_sample``
(exact temperature + top-p, no vocabulary sort, no vLLM random path).

``vllm_engine`` loads it by name (``NUCLEUS_PROCESSOR``) on the CPU build, and so does
``VLLMServer``; a request for it goes to vLLM as greedy (``temperature=0``, ``top_p=1``) with
its real temperature and top-p in ``extra_args`` (``nucleus.vllm_sampling``). The processor
sets the drawn token's logit to the largest float, so vLLM's greedy argmax emits it (and its
random path too, should a client send the real temperature as well). Rows without the
arguments are untouched. It is not argmax-invariant, so vLLM runs it for greedy rows as well.
This module imports vLLM, so only the engine (and its engine core process) imports it.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from amr_dagster.llm.nucleus import TEMPERATURE_ARG, TOP_P_ARG, nucleus_sample


class NucleusLogitsProcessor(LogitsProcessor):
    """Per-request (temperature, top-p) from ``extra_args``, keyed by the request's batch slot."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.rows: dict[int, tuple[float, float]] = {}  # batch slot -> (temperature, top-p)

    def is_argmax_invariant(self) -> bool:
        return False  # it picks the token, and its requests reach vLLM as greedy ones

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if not batch_update:
            return
        for slot in batch_update.removed:
            self.rows.pop(slot, None)
        for slot, params, _, _ in batch_update.added:
            args = getattr(params, "extra_args", None) or {}
            p = args.get(TOP_P_ARG)
            t = float(args.get(TEMPERATURE_ARG, getattr(params, "temperature", 0.0)))
            if p is not None and float(p) < 1.0 and t > 0:
                self.rows[slot] = (t, float(p))
            else:
                self.rows.pop(slot, None)
        for a, b, direction in batch_update.moved:
            ra, rb = self.rows.pop(a, None), self.rows.pop(b, None)
            if ra is not None:
                self.rows[b] = ra
            if direction == MoveDirectionality.SWAP and rb is not None:
                self.rows[a] = rb

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        slots = [s for s in sorted(self.rows) if s < logits.shape[0]]
        if not slots:
            return logits
        settings = torch.tensor([self.rows[s] for s in slots], dtype=logits.dtype, device=logits.device)
        rows = torch.tensor(slots, dtype=torch.long, device=logits.device)
        every_row = len(slots) == logits.shape[0]  # the usual batch: no copy of the rows
        tokens = nucleus_sample(logits if every_row else logits[rows], settings[:, 0], settings[:, 1])
        logits[rows, tokens] = torch.finfo(logits.dtype).max
        return logits
