"""Third-party output kept off the CLI's terminal: transformers' progress bars.

A model load (the embedding model, the GGUF conversion for vLLM) drew a bar between the CLI's
stage lines. ``no_progress_bars`` turns transformers' bars off for a block and restores the
previous state, so a user who switched them off (``HF_HUB_DISABLE_PROGRESS_BARS``) stays off.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def no_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
