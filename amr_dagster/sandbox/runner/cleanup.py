"""Clean-up after a job: kill and reap what it left, empty the scratch folders, look for IPC."""

from __future__ import annotations

import os
import signal


def kill_descendants(child_pid: int) -> int:
    """Kill every process the job started; reap them. How many there were (besides the child)."""
    if os.getpid() == 1:  # init of our own pid namespace: kill(-1) spares only us
        return kill_all(spare=(child_pid,))
    for target in (lambda: os.killpg(child_pid, signal.SIGKILL), lambda: os.kill(child_pid, signal.SIGKILL)):
        try:  # not an init: the child's session/process group is the best we can do
            target()
        except (ProcessLookupError, PermissionError):
            pass
    return 0


def kill_all(spare: tuple[int, ...]) -> int:
    """As pid 1: SIGKILL every other process of the namespace and reap them all; how many of the
    reaped were not in ``spare`` (the job's own child, the fork server: no leftovers)."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    others = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            return others
        others += pid not in spare


def sysv_ipc_in_use() -> bool:
    """Any System V shared memory, semaphore or queue in the namespace (a header line each, else)."""
    for path in ("/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if os.read(fd, 65536).count(b"\n") > 1:
                return True
        finally:
            os.close(fd)
    return False


def empty_dir(path: str) -> bool:
    """Remove everything inside ``path`` without following links; False if anything stayed.

    Runs when every process of the job is dead, so nothing changes underneath it.
    """
    try:
        with os.scandir(path) as entries:
            found = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except OSError:
        return False
    for target, is_dir in found:
        if is_dir:
            _remove_tree(target)
        else:
            try:
                os.unlink(target)
            except OSError:
                pass
    try:
        return not os.listdir(path)
    except OSError:
        return False


def _remove_tree(path: str) -> None:
    """``rm -r`` that never follows links; a folder of plain files (a job's) goes the short way."""
    try:
        with os.scandir(path) as entries:
            found = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
        if not any(is_dir for _, is_dir in found):
            for target, _ in found:
                os.unlink(target)
            os.rmdir(path)
            return
    except OSError:
        pass  # unreadable or undeletable entries: the careful way below
    import shutil

    def retry(func, target, _exc) -> None:
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700, follow_symlinks=False)
        except OSError:
            pass
        try:
            func(target)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)
