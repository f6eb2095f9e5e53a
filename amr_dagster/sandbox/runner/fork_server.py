"""The fork server: the supervisor's one child that forks every job's child."""

from __future__ import annotations

import marshal
import os
import select
import socket
import struct
import sys

from .child import child_main, prepare_job_process
from .cleanup import kill_all
from .libc import prctl, release_free_memory


class ForkServer:
    """A warm fork server: it forks every job's child, so the supervisor itself never forks.

    Why: a fork write-protects every page of the forking process, and the supervisor's own
    per-job work (parsing, counting, reporting) then copy-on-write faults all over its heap
    (measured here: ~0.8 ms of CPU per job, about a HumanEval program's worth). The fork server
    only waits between forks, so it touches few pages. It is a child of the supervisor (pid 1),
    same uid: a job can kill it (the job then fails, see ``supervise``), never the supervisor,
    and kill(-1) after a job that left processes behind takes it too; the next job starts a new
    one. Protocol over a SOCK_SEQPACKET pair: job descriptors in (SCM_RIGHTS); the child's pid,
    then its wait status and CPU time out.
    """

    def __init__(self, workdir: str):
        if os.getpid() != 1:  # its cleanup is kill(-1): only an init of its own namespace may do that
            raise RuntimeError("the fork server needs the supervisor to be pid 1 of its own pid namespace")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        release_free_memory()  # every page the fork server holds is copied (in page tables) per job
        self.pid = os.fork()
        if self.pid == 0:
            try:
                mine.close()
                _fork_server_loop(theirs, workdir)
            finally:
                os._exit(0)
        theirs.close()
        self.channel = mine
        self.alive = True

    def spawn(self, job_fd: int, result_w: int, out_w: int, err_w: int) -> "ForkServerChild | None":
        """A child running the job in ``job_fd``; None if the fork server is gone.

        Returns at once: the child's pid arrives later on the channel, like its end. Waiting
        for it here would let a job hang the supervisor: the child runs as soon as it is
        forked and may stop the fork server before the fork server reports the pid.
        """
        try:
            socket.send_fds(self.channel, [b"J"], [job_fd, result_w, out_w, err_w])
        except OSError:
            self.close()
            return None
        return ForkServerChild(self)

    def close(self) -> None:
        if self.alive:
            self.alive = False
            self.channel.close()


class ForkServerChild:
    """A job's child forked by the fork server; the supervisor watches the fork server's channel,
    which carries the child's pid, then its wait status and CPU time (or EOF if the fork server dies)."""

    def __init__(self, fork_server: ForkServer):
        self.fork_server = fork_server
        self.pid: int | None = None
        self.status: int | None = None
        self.cpu = 0.0
        self.exit_fd = fork_server.channel.fileno()
        self.fork_server_killed = False

    def exit_ready(self) -> bool:
        """Take the message waiting on the channel: True once the child's end (or the fork
        server's) is known, False if it was the pid."""
        message = self.fork_server.channel.recv(64)
        if len(message) == 8:
            self.pid = int.from_bytes(message, "big")
            return False
        if len(message) == 16:
            self.status, self.cpu = int.from_bytes(message[:8], "big", signed=True), struct.unpack("d", message[8:])[0]
        else:  # EOF: the fork server died before the child was done -- killed by the job
            self.fork_server_killed = True
        return True

    def finish(self) -> tuple[int | None, float, int]:
        """Reap the child (through the fork server), kill leftovers: (wait status, CPU s, leftovers)."""
        while self.status is None and not self.fork_server_killed and select.select([self.exit_fd], [], [], 0)[0]:
            self.exit_ready()
        if self.status is None:  # still running (timeout, output flood, host gone), fork server stopped or dead
            return None, self.cpu, self._end_all()
        leftovers = 0
        while True:  # job processes that exited after the child did were reparented to us
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.fork_server.pid:
                self.fork_server_killed = True
            else:
                leftovers += 1
        others = [name for name in os.listdir("/proc") if name.isdigit() and int(name) not in (1, self.fork_server.pid)]
        if others or not self.fork_server.alive or self.fork_server_killed:
            leftovers += self._end_all()
        return self.status, self.cpu, leftovers

    def _end_all(self) -> int:
        self.fork_server.close()
        return kill_all(spare=(self.pid, self.fork_server.pid))


def _fork_server_loop(channel, workdir: str) -> None:
    """The fork server's whole life: fork a child per job, report its pid and how it ended."""
    _prefer_as_oom_victim()  # inherited by every job's child
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # let go of the host's pipe (``prepare_job_process`` does stdin)
    os.close(null)
    prepare_job_process(workdir)
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(channel, 16, 4)
        except OSError:
            return
        if len(fds) != 4:  # EOF: the supervisor is gone
            return
        job_fd, result_w, out_w, err_w = fds
        # Unpacked here, not in the child: a page first written here is cheap to reuse, while
        # every page a child writes first is copied (the child only has to use these objects).
        statements, steps, program, watch, token, limits, job_dir = marshal.loads(os.pread(job_fd, os.fstat(job_fd).st_size, 0))
        os.close(job_fd)
        os.chdir(job_dir)
        pid = os.fork()
        if pid == 0:
            try:  # the channel and every other descriptor are closed before user code runs
                child_main(statements, steps, program, watch, token, result_w, out_w, err_w, limits)
            finally:
                os._exit(71)
        del statements, steps, program, watch, token
        for fd in (result_w, out_w, err_w):
            os.close(fd)
        channel.send(pid.to_bytes(8, "big"))
        _, status, usage = os.wait4(pid, 0)
        channel.send(status.to_bytes(8, "big", signed=True) + struct.pack("d", usage.ru_utime + usage.ru_stime))


def _prefer_as_oom_victim() -> None:
    """oom_score_adj 1000: where a memory cgroup caps the worker, its OOM killer takes job
    processes before the supervisor. An undumpable process cannot open its own /proc files,
    so this briefly becomes dumpable; no job process exists yet when it runs."""
    prctl(4, 1)
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, b"1000")
        finally:
            os.close(fd)
    except OSError:
        pass
    finally:
        prctl(4, 0)
