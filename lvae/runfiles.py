"""Reading the JSON files lvae writes (config.json, the .jsonl logs, results/*.json): one clear line for a bad file.

Each reader either returns what the file says or raises a `CheckpointError` that names the
file; whatever a damaged file makes the parser or the code that uses it raise (KeyError,
TypeError, UnicodeDecodeError, RecursionError on a deeply nested list, ...) becomes that
one line, never a traceback. Nothing here writes.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lvae.errors import CheckpointError, first_line

# What a damaged value raises in code that trusts its shape (a string where a number was, a missing key, ...).
DATA_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, ZeroDivisionError, RecursionError)

# The fields each log row must hold for the code that reads it (resume, the results table, the figures).
LOG_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "history.jsonl": {"iteration": int, "epoch": int, "beta": (int, float), "loss": (int, float), "recon": (int, float),
                      "elbo": (int, float), "kl": list},
    "epochs.jsonl": {"epoch": int, "seconds": (int, float)},
}
# Fields a row may leave out (an epoch whose test pass was skipped, `train.test_every`), typed when present.
OPTIONAL_LOG_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "epochs.jsonl": {"elbo": (int, float), "recon": (int, float), "kl": list},
}


@contextmanager
def reading(path: Path | str, what: str, fix: str = "") -> Iterator[None]:
    """Turn what damaged contents of `path` (a file, or words naming files) raise in the body into one CheckpointError naming it."""
    try:
        yield
    except CheckpointError:
        raise
    except DATA_ERRORS as e:
        raise CheckpointError(f"{path}: not {what} ({type(e).__name__}: {first_line(e)}){'; ' + fix if fix else ''}") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} where a number belongs (lvae never writes NaN or Infinity)")


def read_json(path: Path, what: str = "a JSON file lvae wrote") -> Any:
    """The parsed contents of `path`; a file that cannot be read or is not JSON gives one line, and so does
    NaN or Infinity anywhere in it, or a value of the wrong kind under a number's key (lvae.resultcheck):
    rendered, it would read as a number ("nan ± 0.39", true as 1.00)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or first_line(e)})") from None
    from lvae.resultcheck import checked

    with reading(path, what):
        return checked(json.loads(data, parse_constant=_no_constant), path, what)


def _bad_row(row: Any, fields: dict[str, type | tuple[type, ...]], optional: dict[str, type | tuple[type, ...]]) -> str | None:
    """What is wrong with one log row, in words; None if it has every field the readers use (and `optional` ones typed)."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not a row"
    for key, kind in {**fields, **{k: v for k, v in optional.items() if k in row}}.items():
        value = row.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"no {key!r} of type {getattr(kind, '__name__', 'number')} (got {str(value)[:40]})"
        if kind is int and value < 0:
            return f"{key!r} is negative ({value})"
        if key == "kl" and not all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in value):
            return "'kl' holds something other than numbers"
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a .jsonl log; a torn last line (a write cut short, or one still being written) is left out.

    A damaged line anywhere else, or a row without the fields its readers use
    (`LOG_FIELDS`, by file name), is an error that names the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or first_line(e)})") from None
    fields, optional = LOG_FIELDS.get(path.name, {}), OPTIONAL_LOG_FIELDS.get(path.name, {})
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:
            if n == len(lines):  # no newline after it: torn, not damaged
                break
            raise CheckpointError(f"{path}, line {n}: not a JSON row ({type(e).__name__}: {first_line(e)}); "
                                  f"the log is damaged: restore it, or delete the line") from None
        problem = _bad_row(row, fields, optional)
        if problem:
            raise CheckpointError(f"{path}, line {n}: not a row lvae wrote ({problem}); restore the file, or delete the line")
        rows.append(row)
    return rows
