"""`--compile` (lvae/compiling.py): the same answers as eager, a kernel cache that outlives the run, eager with one
line where no C++ compiler works, and a compiled run that resumes bit for bit."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from lvae import compiling
from lvae.config import ObjectiveConfig, named_config, widened
from lvae.evaluation import importance_log_weights
from lvae.fusion import folded_for_inference
from lvae.losses import objective_loss
from lvae.model import build_model


def test_the_kernel_cache_is_under_the_user_cache_unless_inductor_is_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv(compiling.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiling.cache_dir() == tmp_path / "xdg" / "lvae" / "inductor"
    monkeypatch.setenv(compiling.CACHE_ENV, str(tmp_path / "mine"))
    assert compiling.cache_dir() == tmp_path / "mine"
    assert compiling.use_cache() == tmp_path / "mine" and (tmp_path / "mine").is_dir()


def test_without_a_cxx_compiler_the_module_runs_eager_after_one_line(monkeypatch, capsys):
    import torch._inductor.config as inductor

    monkeypatch.setenv("CXX", "/nonexistent/g++")
    module = torch.nn.Linear(2, 2)
    with inductor.patch({"cpp.cxx": (None, "/nonexistent/g++")}):
        assert compiling.compiler_problem() == "no working C++ compiler (/nonexistent/g++)"
        assert compiling.compiled(module, "the model") is module
    err = capsys.readouterr().err
    assert err == "--compile: no working C++ compiler (/nonexistent/g++); running the model eager\n"


def test_a_failed_tiny_compile_is_reported_too(monkeypatch):
    """A compiler that exists but cannot build: the tiny compile fails, and says with what."""
    def broken(*args, **kwargs):
        raise RuntimeError("ld: cannot find -lgomp\nmore")

    compiling._tiny_compile_problem.cache_clear()
    monkeypatch.setattr(torch, "compile", broken)
    try:
        assert compiling.compiler_problem() == "torch.compile failed on a tiny function (RuntimeError: ld: cannot find -lgomp)"
    finally:
        compiling._tiny_compile_problem.cache_clear()


def small_paper():
    """The `paper` ladder (batch norm everywhere, the separate inference path, the means passed up) at small widths."""
    cfg = widened(named_config("paper"), (48, 32, 24, 16, 16))
    return cfg, build_model(cfg.model_kind, cfg.model)


def loss_and_grads(model, x, cfg, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(seed)
    terms = objective_loss(model(x), x, cfg.model.likelihood, 0.7, cfg.objective, cfg.model.output_variance)
    grads = torch.autograd.grad(terms.loss, [p for p in model.parameters()], allow_unused=True)
    return terms.loss.detach(), [torch.zeros(0) if g is None else g for g in grads]


def relative_error(grads: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """|grads - reference| / |reference| over every parameter's gradient at once."""
    diff = sum(((g - r.to(g.dtype)) ** 2).sum() for g, r in zip(grads, reference))
    return (diff.sqrt() / sum((r**2).sum() for r in reference).sqrt()).item()


@pytest.mark.slow
def test_the_compiled_paper_ladder_gives_eager_s_loss_and_gradients(monkeypatch):
    """One fixed batch through the `paper` ladder, eager and compiled, from the same weights and the same
    noise: the loss within 1e-5 relative (fp32), and the whole gradient as close to the exact (float64)
    gradient as eager's is.

    Why not the gradient within 1e-5 of eager's: eager's own float32 gradient is about 9e-6 from the
    float64 one here (batch norm's gradients sum over the batch with cancellation), so two correct
    float32 orders of summation differ by about that much (6e-6 to 1.6e-5 measured); the biases before a
    batch norm have a gradient of zero up to rounding, so no per-tensor relative bound applies to them.
    """
    from lvae import latents

    torch.set_num_threads(1)
    cfg, eager = small_paper()
    exact = copy.deepcopy(eager).double()
    fast = compiling.compiled(copy.deepcopy(eager))
    x = torch.bernoulli(torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    loss_e, grads_e = loss_and_grads(eager, x, cfg, seed=3)
    loss_c, grads_c = loss_and_grads(fast, x, cfg, seed=3)
    plain = latents.standard_normal_like
    monkeypatch.setattr(latents, "standard_normal_like", lambda t: plain(t.float()).to(t.dtype))  # float32's draws
    loss_x, grads_x = loss_and_grads(exact, x.double(), cfg, seed=3)
    assert loss_c.item() == pytest.approx(loss_e.item(), rel=1e-5) and loss_e.item() == pytest.approx(loss_x.item(), rel=1e-6)
    eager_error = relative_error(grads_e, grads_x)
    assert eager_error < 1e-4  # the float64 reference saw the same noise
    assert relative_error(grads_c, grads_x) <= 2 * eager_error
    assert relative_error(grads_c, grads_e) <= 3e-5
    _, grads_other = loss_and_grads(eager, x, cfg, seed=4)  # other noise: the gradient moves far more
    assert relative_error(grads_other, grads_e) > 1e-2


@pytest.mark.slow
def test_the_compiled_importance_weights_equal_eager_ones():
    """The IW evaluation's log-weights of the folded model, compiled and eager, with the same noise."""
    torch.set_num_threads(1)
    _, model = small_paper()
    folded = folded_for_inference(model)
    fast = compiling.compiled(copy.deepcopy(folded))
    x = torch.bernoulli(torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    torch.manual_seed(5)
    eager_w = importance_log_weights(folded, x, 40, "bernoulli", chunk=60)
    torch.manual_seed(5)
    fast_w = importance_log_weights(fast, x, 40, "bernoulli", chunk=60)
    assert eager_w.shape == fast_w.shape == (3, 40)
    assert torch.allclose(fast_w, eager_w, rtol=1e-5, atol=0)


@pytest.mark.slow
def test_a_compiled_run_resumes_bit_identical_and_records_its_mode(tmp_path, tiny_data, monkeypatch):
    """`train --compile`: killed after iteration 5 with the checkpoint of iteration 3 on disk, then resumed, it
    ends where an uninterrupted compiled run does, and its config says it was compiled."""
    from lvae import checkpoint as ckpt
    from lvae.cli import main
    from lvae.training import Trainer, read_jsonl

    torch.set_num_threads(1)
    args = ["--config", "paper", "--depth", "2", "--batch-size", "32", "--checkpoint-every", "3", "--no-progress",
            "--epochs", "1", "--compile", "--data-root", str(tiny_data)]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *args, "--out", str(ref)]) == 0
    real_step = Trainer.step

    def killed_after_5(self, x, stop):
        if self.state.iteration == 5:
            raise SystemExit("killed")
        return real_step(self, x, stop)

    monkeypatch.setattr(Trainer, "step", killed_after_5)
    with pytest.raises(SystemExit):
        main(["train", *args, "--out", str(run)])
    monkeypatch.setattr(Trainer, "step", real_step)
    assert main(["train", "--resume", str(run), "--data-root", str(tiny_data), "--no-progress"]) == 0
    a, b = (torch.load(Path(r) / ckpt.LATEST, weights_only=True) for r in (ref, run))
    assert a["config"]["train"]["compile"] is True and a["config"]["train"]["amp"] == "off"
    assert read_jsonl(ref / "epochs.jsonl")[0]["compile_seconds"] > 0  # what compiling cost is in the run's log
    assert a["state"] == b["state"] and a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_committed_results_record_the_mode_they_were_trained_in():
    """Every committed result that keeps its config says whether it was compiled and in which precision."""
    results = sorted(Path("results").glob("paper-best*.json"))
    if not results:
        pytest.skip("no committed paper-best results here")
    import json

    for path in results:
        train = json.loads(path.read_text())["config_dict"]["train"]
        assert isinstance(train["compile"], bool) and train["amp"] in ("off", "bf16"), path
