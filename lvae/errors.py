"""The errors lvae raises about files, each with a message that names the file: shared by the
checkpoint code and the readers of every other file a command reads."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint (or run file) that cannot be used or written; the message names the file."""


class DiskFullError(CheckpointError):
    """A write ran out of space (ENOSPC, or a quota); the message names the file, the space it needs and the space free."""


def first_line(e: BaseException) -> str:
    """The first sentence of an exception's message: enough to name the problem on one line."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first.split(". ")[0][:200]
