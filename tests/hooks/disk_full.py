"""How the tests fill the disk, kept out of the package.

`install(after)` lets the first `after` checkpoint writes through; every later one raises
ENOSPC after its first 512 bytes, as a disk that fills mid-file does. The error is raised by
the file object's write(), under torch.save, which turns it into its own "unexpected pos"
RuntimeError: the path a real full disk takes. Only checkpoint temporary files are touched.
"""

from __future__ import annotations

import errno
import os
from typing import Any

ENV = "LVAE_TEST_DISK_FULL_AFTER"
ROOM = 512  # bytes a doomed write gets before the disk is full


class FullDisk:
    """A file whose write() fails with ENOSPC once ROOM bytes are in."""

    def __init__(self, f: Any):
        self.f, self.n = f, 0

    def write(self, data: Any) -> int:
        self.n += len(memoryview(data))
        if self.n > ROOM:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> "FullDisk":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.f.__exit__(*exc)


def install(after: int, monkeypatch=None) -> None:
    """Wrap `os.fdopen` as lvae.checkpoint's atomic writes call it (through `monkeypatch` in-process)."""
    from lvae import checkpoint as ckpt

    real, seen = ckpt.os.fdopen, {"n": 0}

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        f = real(fd, *args, **kwargs)
        if not os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".checkpoint-"):
            return f
        seen["n"] += 1
        return f if seen["n"] <= after else FullDisk(f)

    if monkeypatch is not None:
        monkeypatch.setattr(ckpt.os, "fdopen", fdopen)
    else:
        ckpt.os.fdopen = fdopen
