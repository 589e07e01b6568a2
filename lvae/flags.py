"""Argument types that refuse a bad flag while the command line is parsed, before any work.

Why at parse time: a value checked where it is first used is checked after whatever came before
it (`paper_best --iw-samples 0` was refused after three stages of training), and one used
unchecked gives a traceback or, worse, a result (`sample --temperature nan`: a black PNG). Each
type here raises argparse's ArgumentTypeError, so argparse prints one `error: argument --X: ...`
line and exits with 2.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Callable

SEED_LIMIT = 2**63  # torch.manual_seed takes up to 2**64 - 1; numpy's and Python's seeds are smaller: one bound for all
DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def _named(check: Callable, name: str) -> Callable:
    check.__name__ = name  # what argparse calls the type when it reports a value it could not convert
    return check


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An int in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    return _named(parse, "integer")


def at_least(low: int) -> Callable[[str], int]:
    return integer(low)


seed = integer(0, SEED_LIMIT - 1)


def real(low: float | None = None, high: float | None = None, above: float | None = None) -> Callable[[str], float]:
    """A finite float in [low, high] (and > `above` where given): nan and inf are never a setting."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if (low is not None and value < low) or (high is not None and value > high) or (above is not None and value <= above):
            parts = [f"> {above:g}" if above is not None else f">= {low:g}" if low is not None else "",
                     f"<= {high:g}" if high is not None else ""]
            raise argparse.ArgumentTypeError(f"must be {' and '.join(p for p in parts if p)}, got {text}")
        return value
    return _named(parse, "number")


def existing_path(text: str) -> Path:
    """A file or folder that exists (a run folder, or a weights file)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    return path


def existing_folder(text: str) -> Path:
    path = existing_path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    return path


def folder(text: str) -> Path:
    """A folder to write into: it may not exist yet (it is made), but it must not be a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{parent} is a file, not a folder")
    return path


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """A file to write: one of `suffixes`, in a folder that exists, and not itself a folder."""
    def parse(text: str) -> Path:
        path = Path(text)
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name ({' or '.join(suffixes)})")
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{path} must end in {' or '.join(suffixes)}")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"{path.parent} is not a folder that exists; create it first")
        return path
    return _named(parse, "file")


def device(text: str) -> str:
    if not DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    return text
