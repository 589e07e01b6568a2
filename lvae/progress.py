"""Progress bars for people watching; nothing for log files.

tqdm redraws its bar with a carriage return at every update. Where stderr is a file or a
pipe (CI, nohup, `2> log`) every redraw stays in the log, and a 3-epoch `make demo` leaves
megabytes. So a bar is drawn only on a terminal or in a notebook; what a log needs (the
trainer's one line per epoch) is printed as plain lines either way.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def watched() -> bool:
    """True on a terminal (stderr is a TTY) or in Jupyter, where tqdm.auto draws a widget, not text."""
    in_notebook = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)
    return in_notebook or bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(iterable: Any = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar (leave=False unless given), disabled unless `enabled` and someone watches it."""
    return tqdm(iterable, disable=not (enabled and watched()), **{"leave": False, **kwargs})


def print_line(text: str) -> None:
    """Print a line to stdout without tearing a bar that is being drawn, and flush it: stdout
    to a file is block-buffered, and a log followed with `tail -f` should show each epoch as it ends."""
    tqdm.write(text)
    sys.stdout.flush()
