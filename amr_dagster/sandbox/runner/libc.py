"""The few libc calls the runner needs (ctypes): prctl and malloc_trim."""

from __future__ import annotations

import functools


def become_undumpable() -> None:
    """Deny same-uid processes /proc/<our pid>/{mem,fd,environ} and ptrace (PR_SET_DUMPABLE=0)."""
    prctl(4, 0)


@functools.lru_cache(maxsize=1)
def _libc():
    """This process's C library through ctypes, or None where it cannot be loaded."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (OSError, ImportError):
        return None


def release_free_memory() -> None:
    """glibc's malloc_trim(0): hand freed heap pages back (imports leave megabytes of them)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def prctl(option: int, argument) -> None:
    call = getattr(_libc(), "prctl", None)
    if call is not None:
        call(option, argument, 0, 0, 0)
