"""Stable row ids.

A row id is derived from the row's content and its parent's id (and the sample index where a
stage samples), so the same input always yields the same id on any machine, and a row's id
changes whenever anything upstream of it changes.
"""

from __future__ import annotations

import hashlib

_SEP = b"\x1f"


def stable_id(*parts: object, length: int = 16) -> str:
    """Hex digest over ``parts`` (``None`` and strings/ints/bytes allowed), ``length`` chars."""
    h = hashlib.blake2b(digest_size=max(8, (length + 1) // 2))
    for part in parts:
        if part is None:
            data = b"\x00"
        elif isinstance(part, bytes):
            data = part
        else:
            data = str(part).encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
        h.update(_SEP)
    return h.hexdigest()[:length]


def row_id(parent_id: str | None, content: str | bytes, sample_index: int | None = None) -> str:
    """The id of a row: its parent's id, its content and, for sampled rows, the sample index."""
    return stable_id(parent_id, content, sample_index)


def seed_for(row: str, global_seed: int, salt: str = "") -> int:
    """A 63-bit sampling seed for one row: per-row determinism independent of row order."""
    return int(stable_id(row, global_seed, salt, length=16), 16) & ((1 << 63) - 1)


def request_seed(row: str, global_seed: int, salt: str = "") -> int:
    """``seed_for`` cut to 31 bits: the base seed of a generation stage's LLM request."""
    return seed_for(row, global_seed, salt) & 0x7FFFFFFF
