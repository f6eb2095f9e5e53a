"""SelfCodeAlign's sanitizing rules that judge one sample on its own (parse time).

- ``incomplete_code: <marker>``: the response (explanation, code or tests) still holds a
  marker of unfinished work: ``todo``, ``fixme``, ``your code here``, ``notimplemented``, ...
  (matched case-insensitively, as the reference does on the whole response). Such code can
  even pass its tests (a stub returning ``None`` against a weak test) but teaches nothing.
- ``too_many_words: N > LIMIT``: an instruction longer than ``max_words`` words (200 in the
  reference); very long tasks are mostly a model rambling on.

The rules that compare samples with each other (repeated function-name sets, dedup on a code
representation) need every earlier pair, so they run at export (``dataset/code_keys.py``).
"""

from __future__ import annotations

import re

INCOMPLETE = "incomplete_code"
TOO_MANY_WORDS = "too_many_words"

# Our own list after the reference's idea; "write your code here" is covered by "your code here".
INCOMPLETE_MARKERS: tuple[str, ...] = (
    "todo",
    "fixme",
    "your code here",
    "your code goes here",
    "implement me",
    "notimplemented",
)
_MARKER = re.compile("|".join(re.escape(m) for m in INCOMPLETE_MARKERS))


def incomplete_marker(*texts: str) -> str | None:
    """``incomplete_code: <marker>`` for the first marker found in any of ``texts``, else None."""
    for text in texts:
        found = _MARKER.search((text or "").lower())
        if found:
            return f"{INCOMPLETE}: {found.group(0)}"
    return None


def too_many_words(instruction: str, max_words: int) -> str | None:
    """``too_many_words: N > max_words`` when the instruction is longer (``max_words`` 0 = off)."""
    words = len((instruction or "").split())
    if max_words > 0 and words > max_words:
        return f"{TOO_MANY_WORDS}: {words} > {max_words}"
    return None
