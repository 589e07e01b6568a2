"""One writer per run folder: an exclusive lock on the folder, held while a process trains into it.

Two copies of `train --resume RUN` (a requeued cluster job while the first still runs, a
second terminal), or `train --out RUN --overwrite` while RUN trains, would both write every
log row and checkpoint. The second is refused before it touches anything.

Why `flock` on the folder itself, not on a lock file: nothing appears in the run folder (a
refused or failed command leaves it byte for byte as it was), and the kernel drops the lock
when the process ends, however it ends, so a SIGKILLed run never blocks its own resume.
(POSIX `fcntl` locks would need a file open for writing; a folder cannot be.) The holder's pid
comes from /proc/locks where there is one (Linux); elsewhere the message says "another process".

Once the lock is held, temporaries that an interrupted atomic write left (`.NAME.XXXX.tmp`, lvae.checkpoint)
are removed, and a line says so: no other process can be writing them then.

A runner (lvae.experiments.paper, paper_best) holds `runner_lock` on the run for the whole run, training,
scoring and the result write, so a second runner on the same run is refused from the start, not after
both have done the same work. It locks a file of its own (`RUNNER_LOCK`), not the folder: the `train`
child it starts takes the folder's lock itself.

Readers (evaluate, sample, figures) take no lock: every file a writer updates is replaced
atomically (checkpoints, config.json) or appended line by line (the .jsonl logs, whose
reader drops a torn last line), so a reader never sees half of a file.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

EXIT_LOCKED = 75  # sysexits' EX_TEMPFAIL: the same command succeeds once the other writer has stopped
RUNNER_LOCK = "runner.lock"  # in a run folder: held by the runner that trains and scores it


class RunLocked(RuntimeError):
    """The run folder is held by another training process; the message names the folder and its pid."""


def holder_pid(folder: Path, locks: Path = Path("/proc/locks")) -> int | None:
    """The pid holding a flock on `folder`, from the kernel's lock table; None where that cannot be read."""
    try:
        st = os.stat(folder)
        table = locks.read_text()
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 3331 fe:00:2147259 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None


def locked_message(folder: Path, pid: int | None, what: str = "training process") -> str:
    who = f"another {what} (pid {pid})" if pid else f"another {what}"
    stop = f" (or stop it: kill {pid})" if pid else ""
    return (f"{folder} is being written by {who}; a run folder takes one writer at a time: "
            f"wait for that one to end{stop}, then run this command again")


@contextmanager
def _flock(path: Path, fd: int, folder: Path, what: str) -> Iterator[None]:
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(locked_message(folder, holder_pid(path), what)) from None
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the one-writer lock on `folder` (created if missing) for the body; raise RunLocked if another process holds it.
    Stale temporaries of interrupted writes are removed once it is held."""
    from lvae.checkpoint import remove_stale_temporaries

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _flock(folder, os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)), folder, "training process"):
        remove_stale_temporaries(folder)
        yield


@contextmanager
def runner_lock(folder: Path) -> Iterator[None]:
    """Hold `folder`/RUNNER_LOCK for the body (a whole run: train, score, write the result); RunLocked if another runner has it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUNNER_LOCK
    with _flock(path, os.open(path, os.O_RDONLY | os.O_CREAT, 0o644), folder, "runner"):
        yield
