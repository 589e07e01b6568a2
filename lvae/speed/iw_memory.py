"""Peak memory of a long importance-weighted score: what `evaluate --iw-samples 5000` needs per `--chunk`.

    python -m lvae.speed.iw_memory [WEIGHTS] [--iw-samples 5000] [--limit N] [--chunk C ...] [--threads T]

Each chunk is scored by a fresh `python -m lvae evaluate WEIGHTS --iw-samples K --limit N --chunk C
--prior-samples 0` process (the likelihood only: the prior samples' memory is another question), and its
peak resident memory is read from the kernel (getrusage of the finished child). Why a child: a process's
peak cannot be reset, and the score's own allocations must not mix with this one's. One line per chunk,
with the CPU named; `--limit` scores the first N test images (the full set at K = 5000 takes about an
hour of one core for paper-best), and the line says so.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from lvae.evaluation import cpu_model
from lvae.flags import at_least, existing_path

DEFAULT_WEIGHTS = Path("results/paper-best.pt")


def peak_rss_mib(argv: list[str], threads: int) -> tuple[float, float, str]:
    """(peak RSS of `python -m lvae ARGV` in MiB, wall seconds, its stderr's last line): run in a child of a
    child, so that RUSAGE_CHILDREN holds that one process only."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode); "
             "print((p.stderr.strip().splitlines() or [''])[-1])")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "lvae", *argv], capture_output=True, text=True, env=env)
    first, last = (out.stdout.splitlines() + ["", ""])[:2]
    kib, code = first.split() if first else ("0", "1")
    if out.returncode or code != "0":
        raise RuntimeError(f"python -m lvae {' '.join(argv)} failed: {last or out.stderr.strip()[-300:]}")
    scale = 1 if sys.platform.startswith("linux") else 1 / 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return int(kib) * scale / 1024, time.perf_counter() - t0, last


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.speed.iw_memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="?", type=existing_path, default=DEFAULT_WEIGHTS, help="a weights file or run folder")
    ap.add_argument("--iw-samples", type=at_least(1), default=5000, metavar="K")
    ap.add_argument("--limit", type=at_least(1), help="score the first N test images (default: all 10,000)")
    ap.add_argument("--chunk", type=at_least(1), nargs="+", help="rows per pass to try (default: evaluate's own)")
    ap.add_argument("--threads", type=at_least(1), default=1)
    ap.add_argument("--data-root", type=existing_path)
    a = ap.parse_args(argv)
    if not a.weights.exists():
        ap.error(f"{a.weights} does not exist")
    images = f"the first {a.limit} test images (a subset)" if a.limit else "the full test set (10,000 images)"
    print(f"peak RSS of evaluate {a.weights} --iw-samples {a.iw_samples} on {images}, {a.threads} thread(s), "
          f"{cpu_model()}, {os.cpu_count()} cores", flush=True)
    for chunk in a.chunk or [None]:
        argv_ = ["evaluate", str(a.weights), "--iw-samples", str(a.iw_samples), "--prior-samples", "0", "--json", "--no-progress",
                 *(["--limit", str(a.limit)] if a.limit else []), *(["--chunk", str(chunk)] if chunk else []),
                 *(["--data-root", str(a.data_root)] if a.data_root else [])]
        try:
            mib, seconds, _ = peak_rss_mib(argv_, a.threads)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"--chunk {chunk or 'default'}: peak RSS {mib:.0f} MiB ({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
