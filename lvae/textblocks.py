"""Blocks of generated text inside hand-written files, between a start and an end marker."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Callable

from lvae.runfiles import read_json, reading

JSON_FILE = "a results file lvae wrote"


def replaced(text: str, blocks: dict[tuple[str, str], str], where: Path) -> str:
    for (start, end), body in blocks.items():
        if start not in text or end not in text:
            raise SystemExit(f"error: {where} has no {start} ... {end} block")
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)
    return text


def replaced_cells(text: str, cells: dict[str, str], tag: str, where: Path) -> str:
    """`<!-- TAG:KEY -->...<!-- /TAG:KEY -->` on one line (a table cell, say) filled with cells[KEY]."""
    for key, body in cells.items():
        start, end = f"<!-- {tag}:{key} -->", f"<!-- /{tag}:{key} -->"
        if start not in text or end not in text:
            raise SystemExit(f"error: {where} has no {start} ... {end} cell")
        text = re.sub(re.escape(start) + "[^\n]*?" + re.escape(end), lambda _: f"{start}{body}{end}", text)
    return text


def replace_blocks(path: Path, blocks: dict[Any, Any], check: bool = False) -> int:
    """Write `blocks` ({(start, end): body} and {tag: {key: cell}}) into `path` (or, with `check`, say whether they are already there). 0: up to date or now
    written; 1: out of date (check only)."""
    text = Path(path).read_text()
    new = replaced(text, {k: v for k, v in blocks.items() if isinstance(k, tuple)}, path)
    for tag, cells in ((k, v) for k, v in blocks.items() if isinstance(k, str)):  # a str key: the tag of one-line cells
        new = replaced_cells(new, cells, tag, path)
    if new == text:
        print(f"{path} already up to date")
        return 0
    if check:
        print(f"{path} is out of date: run make results-table", file=sys.stderr)
        return 1
    Path(path).write_text(new)
    print(f"{path} updated")
    return 0


def json_sections(results_dir: Path, sections: tuple[tuple[str, str, Callable[[Any], str]], ...], heading: str = "###") -> list[str]:
    """For each (file name, title, render) whose file is in `results_dir`: a heading, the file's own note, and
    render(its contents); a damaged file gives one line that names it."""
    parts: list[str] = []
    for fname, title, render in sections:
        path = Path(results_dir) / fname
        if path.exists():
            data = read_json(path, JSON_FILE)
            with reading(path, JSON_FILE, "restore it, or run the command that writes it again"):
                parts += ["", f"{heading} {title}", ""]
                if data.get("note"):
                    parts += [str(data["note"]), ""]
                parts.append(render(data))
    return parts
