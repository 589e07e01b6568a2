"""The importance-weighted bound as a training objective (Burda et al., 2016), for every model kind:
its K = 1 case is the ELBO, it rises with K, and its value and gradient match a float64 reference
written with torch.distributions."""

import copy
import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

from lvae.config import ConfigError, LayerSpec, ModelConfig, ObjectiveConfig, RunConfig, seed_config, validate
from lvae.data import fixed_binarization, load_split, synthetic_split
from lvae.evaluation import iw_log_likelihood
from lvae.latents import Gaussian
from lvae.losses import compute_loss, iw_loss, kl_per_layer
from lvae.model import HierarchicalVAE, LadderVAE, TopLatentVAE
from lvae.training import Trainer, read_jsonl
from conftest import dense_config

KINDS = [LadderVAE, HierarchicalVAE, TopLatentVAE]
TINY = ModelConfig([LayerSpec("dense", (8,), 2), LayerSpec("dense", (8,), 2)], image_shape=(1, 2, 3), likelihood="bernoulli")


def tiny_images(n=16, seed=0):
    return fixed_binarization(synthetic_split(n, seed).images)


# ----------------------------------------------------------------------------- the bound


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_k_equal_one_is_the_elbo_in_expectation(kind, beta):
    """On the same draws, the K = 1 loss (one-sample KL) and the ELBO loss (closed-form KL where it exists)
    differ by a zero-mean term: over 3200 draws their means agree within the noise of that difference."""
    model = kind(dense_config(3)).eval()
    x = tiny_images(16).repeat(200, 1, 1, 1)
    with torch.no_grad():
        out = model(x)
        iw = iw_loss(out, x, "bernoulli", beta)
        elbo = compute_loss(out, x, "bernoulli", beta)
        per_draw = -sum(layer.p.log_prob(layer.z) - layer.q.log_prob(layer.z) for layer in out.latents)  # one-sample KL
        closed = sum(kl_per_layer(out))  # closed form where the layer allows it
    noise = (per_draw - closed).std().item() / math.sqrt(len(x))
    assert noise > 0
    assert abs(iw.loss.item() - elbo.loss.item()) < 5 * beta * noise + 1e-4
    assert torch.allclose(iw.recon, elbo.recon) and all(torch.allclose(a, b) for a, b in zip(iw.kl, elbo.kl))  # same logged terms


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_the_bound_rises_with_k(kind):
    """L_1 < L_5 < L_50 on a fixed model, each the mean of 20 seeded estimates, by more than 3 standard errors."""
    torch.manual_seed(0)
    model = kind(dense_config(3)).eval()
    x = tiny_images(32)
    with torch.no_grad():
        draws = {k: torch.tensor([-iw_loss(model(x, repeats=k), x, "bernoulli").loss.item() for _ in range(20)]) for k in (1, 5, 50)}
    mean = {k: d.mean().item() for k, d in draws.items()}
    se = {k: d.std().item() / math.sqrt(len(d)) for k, d in draws.items()}
    for lo, hi in ((1, 5), (5, 50)):
        assert mean[hi] - mean[lo] > 3 * math.hypot(se[lo], se[hi]), (mean, se)


def test_the_training_bound_is_the_evaluation_estimate_on_the_same_draws():
    """One log-weight function serves both: with the same seed and K = 50 in one pass they agree to float32 rounding."""
    model = LadderVAE(dense_config(3)).eval()
    x = tiny_images(8)
    torch.manual_seed(3)
    with torch.no_grad():
        trained = -iw_loss(model(x, repeats=50), x, "bernoulli").loss.item()
    torch.manual_seed(3)
    scored = -iw_log_likelihood(model, x, 50, "bernoulli", chunk=10_000).nll
    assert abs(trained - scored) < 1e-4


def fixed_noise(seed: int):
    """A `Gaussian.sample` that draws the same float32 noise whatever the model's dtype."""
    g = torch.Generator().manual_seed(seed)

    def sample(self, temperature=1.0):
        eps = torch.randn(self.mu.shape, generator=g).to(self.mu.dtype)
        return self.mu + temperature * self.std * eps

    return sample


def reference_loss(out, x, k: int, beta: float) -> torch.Tensor:
    """-(1/B) sum_b log (1/K) sum_k exp(log p(x|z) + beta (log p(z) - log q(z|x))), with torch.distributions."""
    xk = x.double().repeat_interleave(k, 0)
    a = Independent(Bernoulli(logits=out.x_logits), 3).log_prob(xk)
    for layer in out.latents:
        p = Independent(Normal(layer.p.mu, layer.p.std), 1)
        q = Independent(Normal(layer.q.mu, layer.q.std), 1)
        a = a + beta * (p.log_prob(layer.z) - q.log_prob(layer.z))
    return -(torch.logsumexp(a.view(len(x), k), 1) - math.log(k)).mean()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_value_and_gradient_match_a_float64_reference(kind, beta, monkeypatch):
    torch.manual_seed(1)
    model = kind(TINY)
    ref_model = copy.deepcopy(model).double()
    x = torch.bernoulli(torch.full((5, 1, 2, 3), 0.5))
    k = 7
    monkeypatch.setattr(Gaussian, "sample", fixed_noise(0))
    loss = iw_loss(model(x, repeats=k), x, "bernoulli", beta).loss
    loss.backward()
    monkeypatch.setattr(Gaussian, "sample", fixed_noise(0))
    ref = reference_loss(ref_model(x.double(), repeats=k), x, k, beta)
    ref.backward()
    assert abs(loss.item() - ref.item()) < 1e-4 * (1 + abs(ref.item()))
    grads = [(p.grad, r.grad) for p, r in zip(model.parameters(), ref_model.parameters()) if r.grad is not None]
    assert len(grads) == len(list(model.parameters()))
    for g, r in grads:
        assert torch.allclose(g.double(), r, rtol=1e-3, atol=1e-5)
    assert max(r.abs().max().item() for _, r in grads) > 1e-2  # a gradient that could have been wrong


# ----------------------------------------------------------------------------- config and training


def test_old_configs_load_as_elbo_and_bad_values_are_refused():
    d = seed_config().to_dict()
    del d["objective"]["bound"], d["objective"]["iw_samples"], d["train"]["finetune_from"]  # a config.json from before
    cfg = RunConfig.from_dict(d)
    assert (cfg.objective.bound, cfg.objective.iw_samples, cfg.objective.draws, cfg.train.finetune_from) == ("elbo", 1, 1, None)
    validate(cfg)
    for objective, message in ((ObjectiveConfig(bound="iwae"), "unknown objective 'iwae'"),
                               (ObjectiveConfig(bound="iw", iw_samples=0), "must be a positive integer"),
                               (ObjectiveConfig(iw_samples=5), "--iw-train 5 needs --objective iw"),
                               (ObjectiveConfig(bound="iw", iw_samples=5, kl_mode="seed"), "use --kl-mode paper"),
                               (ObjectiveConfig(bound="iw", iw_samples=5, free_bits=1.0), "use --free-bits 0")):
        cfg.objective = objective
        with pytest.raises(ConfigError, match=message):
            validate(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lvae", "hvae", "top-vae"])
def test_training_on_the_iw_bound(tmp_path, tiny_data, kind):
    """K = 5 draws per image, beta = 1: each logged loss is -L_5, above the same draws' ELBO, and the bound improves."""
    cfg = seed_config()
    cfg.model_kind, cfg.model = kind, dense_config(2)
    cfg.objective.bound, cfg.objective.iw_samples = "iw", 5
    cfg.objective.beta.kind, cfg.objective.beta.end = "constant", 1.0
    cfg.train.batch_size, cfg.train.epochs, cfg.train.lr = 32, 3, 3e-3
    Trainer(cfg, tmp_path / "run", load_split("mnist", "train", tiny_data), load_split("mnist", "test", tiny_data), progress=False).fit()
    rows = read_jsonl(tmp_path / "run" / "history.jsonl")
    assert len(rows) == 3 * 256 // 32 and all(len(r["kl"]) == (1 if kind == "top-vae" else 2) for r in rows)
    assert all(r["loss"] < -r["elbo"] for r in rows)  # L_5 > the ELBO on an untrained-to-young model
    assert sum(r["loss"] for r in rows[-4:]) < 0.9 * sum(r["loss"] for r in rows[:4])
