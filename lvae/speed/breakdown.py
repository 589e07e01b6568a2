"""Where one training step's time goes: torch.profiler's ops sorted into matmul, element-wise, optimizer, data, other.

Why: a step's fraction of the matmul peak says how far it is from the limit, not why. On a chip whose bf16
units make the matmuls nearly free, what is left is element-wise work (the Gaussian heads, the merge,
the KL, clipping) and overhead; this says how much of each there is, before and after a change.

Each op's own (self) time counts once, in the category of its nearest labelled ancestor (anything
under `Optimizer.step` is optimizer, anything under a `record_function("data")` block is data), else
of its own name; the step's wall time not spent inside any op (Python, the autograd engine's
bookkeeping) is "other", so the categories add up to the measured time.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from torch.profiler import ProfilerActivity, profile

CATEGORIES = ("matmul", "element-wise", "optimizer", "data", "other")
DATA_LABEL = "data"  # wrap a step's batch preparation in torch.profiler.record_function(DATA_LABEL)
MATMUL_OPS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation", "mkldnn_linear", "convolution",
              "_convolution", "mkldnn_convolution", "conv2d", "conv_transpose2d", "convolution_backward"}
# tensor bookkeeping and host syncs: no arithmetic on the data
OTHER_OPS = {"empty", "empty_strided", "empty_like", "view", "reshape", "_reshape_alias", "as_strided", "t", "transpose",
             "permute", "expand", "detach", "detach_", "_unsafe_view", "unsqueeze", "squeeze", "select", "slice", "split",
             "chunk", "unbind", "flatten", "unflatten", "contiguous", "resize_", "alias", "lift_fresh", "item",
             "_local_scalar_dense", "to", "set_", "stride", "is_nonzero", "result_type", "numpy_T"}


def op_category(name: str, ancestors: list[str]) -> str:
    """The category of an op called `name`, nested in ops named `ancestors` (nearest first)."""
    for a in [name, *ancestors]:
        if a.startswith("Optimizer.step") or a.startswith("Optimizer.zero_grad"):
            return "optimizer"
        if a == DATA_LABEL:
            return "data"
    if not name.startswith("aten::"):
        # inductor's fused kernels are element-wise work; labels and the autograd engine's frames are overhead
        return "element-wise" if name.startswith("cpp_fused") else "other"
    op = name.removeprefix("aten::")
    if op in MATMUL_OPS:
        return "matmul"
    return "other" if op in OTHER_OPS else "element-wise"


def categorise(events: list[Any], wall_s: float) -> dict[str, float]:
    """Seconds per category from profiler events (`.name`, `.self_cpu_time_total` in µs, `.cpu_parent`), the
    wall time the ops left uncovered added to "other"; "total" is their sum (the wall time, unless the ops
    overlapped it)."""
    out = dict.fromkeys(CATEGORIES, 0.0)
    for e in events:
        ancestors, p = [], e.cpu_parent
        while p is not None:
            ancestors.append(p.name)
            p = p.cpu_parent
        out[op_category(e.name, ancestors)] += e.self_cpu_time_total / 1e6
    out["other"] += max(0.0, wall_s - sum(out.values()))
    out["total"] = sum(out[c] for c in CATEGORIES)
    return out


def step_breakdown(step: Callable[[], Any], steps: int = 3, warmup: int = 1) -> dict[str, float]:
    """Seconds per step in each category, over `steps` profiled calls of `step` after `warmup` unprofiled ones."""
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - t0
    return {k: v / steps for k, v in categorise(list(prof.events()), wall).items()}
