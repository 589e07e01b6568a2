"""lvae/speed/breakdown.py sorts a step's profiled time into categories that add up to the step, and
lvae/speed/machine.py names the chip and its bf16 flags."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lvae.speed import breakdown, machine
from lvae.speed.breakdown import CATEGORIES, op_category, step_breakdown


def test_each_op_lands_in_the_category_of_its_nearest_label_or_its_name():
    assert op_category("aten::mm", ["aten::matmul", "autograd::engine::evaluate_function: MmBackward0"]) == "matmul"
    assert op_category("aten::mul_", ["aten::_foreach_mul_", "Optimizer.step#Adam.step"]) == "optimizer"
    assert op_category("aten::bernoulli_", ["data"]) == "data"
    assert op_category("aten::softplus", []) == "element-wise"
    assert op_category("cpp_fused_add_exp_mul_0", ["CompiledFunction"]) == "element-wise"
    assert op_category("aten::view", []) == "other" and op_category("CompiledFunction", []) == "other"


def event(name, self_us, parent=None):
    return SimpleNamespace(name=name, self_cpu_time_total=self_us, cpu_parent=parent)


def test_the_categories_add_up_to_the_wall_time_and_what_no_op_covered_is_other():
    step = event("Optimizer.step#Adam.step", 100)
    events = [event("aten::mm", 3000), step, event("aten::_fused_adam_", 900, step), event("aten::exp", 500)]
    d = breakdown.categorise(events, wall_s=0.01)
    assert d["matmul"] == pytest.approx(0.003) and d["optimizer"] == pytest.approx(0.001)
    assert d["element-wise"] == pytest.approx(0.0005) and d["other"] == pytest.approx(0.0055)
    assert d["total"] == pytest.approx(0.01) == sum(d[c] for c in CATEGORIES)


def test_a_matmul_heavy_step_is_mostly_matmul_and_an_optimizer_step_is_seen():
    torch.set_num_threads(1)
    w = torch.randn(384, 384, requires_grad=True)
    x = torch.randn(384, 384)
    opt = torch.optim.SGD([w], lr=1e-3)

    def step():
        with torch.profiler.record_function("data"):
            batch = x + 0.0
        loss = (batch @ w @ w @ w).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    d = step_breakdown(step, steps=3)
    assert sum(d[c] for c in CATEGORIES) == pytest.approx(d["total"], rel=1e-9)
    assert d["matmul"] > 0.5 * d["total"], d
    assert d["optimizer"] > 0 and d["data"] > 0 and d["element-wise"] > 0


def test_the_cpu_model_and_its_bf16_flags_are_read_from_cpuinfo():
    text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n" \
           "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    model, flags = machine.cpuinfo_fields(text)
    assert model == "Intel(R) Xeon(R) Platinum 8480+" and {"avx512_bf16", "amx_bf16", "avx2"} <= flags and "fpu" in flags
    c = {"model": model, "flags": {f: f in flags for f in machine.FLAGS}}
    assert machine.describe(c) == "Intel(R) Xeon(R) Platinum 8480+ (avx512_bf16, amx_bf16)"
    assert machine.describe({"model": "AMD EPYC", "flags": {"avx512_bf16": False}}) == "AMD EPYC (no bf16 units)"
    here = machine.cpu()
    assert here["model"] and set(here["flags"]) == set(machine.FLAGS)
