"""torch.compile for training and scoring (`--compile`): cached across runs, timed, and eager where it cannot work.

Why each piece:
- The compiled kernels are C++ that inductor builds with the machine's compiler; without one, or if the
  build fails, `compiled` says so in one line and hands back the eager module, so `--compile` never
  stops a run.
- Compiling a `paper` step takes seconds on an idle machine and minutes on a busy one; inductor's
  FX-graph and AOT-autograd caches keep the built kernels on disk, and `cache_dir` puts them under the
  user's cache folder (not /tmp, which a reboot empties), so a resumed or repeated run loads them.
- The compiled model draws its noise with torch's own random ops (`fallback_random`), the same
  numbers eager draws from the same generator state: a compiled run and an eager one take the same
  samples, so their losses and gradients agree to float rounding (tests/test_compiling.py) and a
  resumed run repeats its noise exactly.
- `compile_seconds` is what compiling has cost this process so far, so every figure can count it.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # inductor's own variable: set it to move the cache


def cache_dir() -> Path:
    """Where compiled kernels are kept: $TORCHINDUCTOR_CACHE_DIR if set, else $XDG_CACHE_HOME/lvae/inductor
    (~/.cache/lvae/inductor)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lvae" / "inductor"


def use_cache() -> Path:
    """Point inductor at `cache_dir()` (read when it first compiles) with its on-disk caches on; returns the folder."""
    import torch._inductor.config as inductor

    path = cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_ENV] = str(path)
    inductor.fx_graph_cache = True
    inductor.fallback_random = True  # eager's random ops: the same draws as an eager run
    return path


def compiler_problem() -> str | None:
    """None if inductor can build C++ kernels here; else why not, in a few words.

    Looks for the C++ compiler inductor would call, then compiles one tiny function (from the cache
    after the first time), so a compiler that exists but cannot build is caught too.
    """
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        return f"no working C++ compiler ({os.environ.get('CXX', 'g++')})"
    return _tiny_compile_problem()


@lru_cache(maxsize=1)
def _tiny_compile_problem() -> str | None:
    try:
        use_cache()
        torch.compile(lambda t: t * 2 + 1, dynamic=False)(torch.zeros(8))
    except Exception as e:  # any failure to build means: run eager
        return f"torch.compile failed on a tiny function ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return None


def compiled(module: nn.Module, what: str = "the model") -> nn.Module:
    """`torch.compile(module)` with the kernel cache on; the module itself, after one line on stderr, where
    inductor cannot build kernels on this machine."""
    problem = compiler_problem()
    if problem is not None:
        print(f"--compile: {problem}; running {what} eager", file=sys.stderr)
        return module
    use_cache()
    return torch.compile(module)


def compile_seconds() -> float:
    """Seconds this process has spent compiling (forward and backward graphs, cache loads included)."""
    from torch._dynamo.utils import calculate_time_spent

    return calculate_time_spent().get("total_wall_time", 0.0)
