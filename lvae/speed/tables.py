"""The speed docs (docs/speed.md): `make bench`, `bench_parallel` and `bench-compare` JSONs as tables.

    python -m lvae.speed.tables [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lvae.checkpoint import CheckpointError
from lvae.results import RESULTS
from lvae.speed.bench import bench_table
from lvae.textblocks import json_sections, replace_blocks

DOC = Path("docs/speed.md")
START, END = "<!-- speed:start -->", "<!-- speed:end -->"


def _parallel_table(b: dict[str, Any]) -> str:
    from lvae.speed.bench_parallel import table

    return table(b)

def _compare_table(b: dict[str, Any]) -> str:
    from lvae.speed.bench_compare import table

    return table(b)

def render(results_dir: Path = RESULTS) -> str:
    parts = json_sections(results_dir, (("bench.json", "Speed (`make bench`)", bench_table),
                                        ("bench-parallel.json", "Threads or processes (`python -m lvae.speed.bench_parallel`)", _parallel_table),
                                        ("bench-compare.json", "What the speed changes bought (`make bench-compare`)", _compare_table)), heading="##")
    return "\n".join(parts).strip() or "(no benchmarks yet: `make bench`)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.speed.tables", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help=f"fail if {DOC} is not up to date")
    a = ap.parse_args(argv)
    try:
        return replace_blocks(DOC, {(START, END): render()}, check=a.check)
    except CheckpointError as e:  # a damaged benchmark file: one line that names it
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
