"""One trainer per run folder.

A trainer holds an exclusive `flock` on `RUN_DIR/.townlet.lock` for as long as it runs and
writes its pid, host and start time into the file. A second trainer on the same folder
finds the lock taken and stops with a line naming the first. The kernel drops the lock
when its process dies, however it dies, so a lock left by a killed trainer (kill -9, a
node lost) is simply taken over; the file's old contents only name who held it.

Network file systems: `flock` works across hosts on NFSv4 and Lustre (with `flock`
mounts); where the file system refuses locks altogether the trainer warns and runs
unlocked rather than not at all.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import os
import socket
import sys
from pathlib import Path

from .run_errors import RunLockError

LOCK_NAME = ".townlet.lock"


class RunLock:
    def __init__(self, run_dir: str | os.PathLike[str]):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        #: What the file said when we took it over from a process that is gone ("" if new).
        self.previous_holder = ""

    def acquire(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunLockError(f"{self.path}: cannot create the run lock: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise RunLockError(
                    f"{self.path.parent}: another trainer is using this run folder ({holder or 'holder unknown'}); "
                    "stop it or choose another folder (hydra.run.dir=...)") from None
            print(f"warning: {self.path}: the file system refuses locks ({e.strerror}); running without the "
                  "one-trainer-per-folder guard", file=sys.stderr)
            return self
        self.previous_holder = _read(fd)
        if self.previous_holder:
            print(f"note: {self.path.parent}: recovered the lock left by a trainer that is no longer running "
                  f"({self.previous_holder})", file=sys.stderr)
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}".encode(), 0)
        except OSError:  # the lock holds regardless; the note is only for messages
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        """Clear the note and drop the lock. The file stays: unlinking it would let a
        trainer that opened it a moment before lock a file no one else can see."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        return ""
