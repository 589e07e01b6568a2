"""The importance-weighted bound, active units and the evaluate command, on tiny models.

Exactness is checked against log p(x) computed by quadrature: a model with two 1-d
latents over 6 binary pixels has a marginal we can integrate on a grid to any precision.
The ladder and the hierarchical VAE share the generative path, so one quadrature serves both.
"""

import json
import math

import pytest
import torch

from lvae.cli import main
from lvae.config import LayerSpec, ModelConfig, paper_config
from lvae.data import fixed_binarization, synthetic_split
from lvae.evaluation import active_units, importance_log_weights, iw_log_likelihood, unbiased_activity
from lvae.latents import Gaussian
from lvae.losses import log_likelihood
from lvae.model import build_model
from lvae.model import HierarchicalModel, HierarchicalVAE, LadderVAE, LatentSample, ModelOutput, TopLatentVAE
from lvae.training import split_elbo
from conftest import conv_config, dense_config


def tiny_images(n=32, seed=0):
    return fixed_binarization(synthetic_split(n, seed).images)


# ----------------------------------------------------------------------------- exactness


def quadrature_log_px(model: HierarchicalModel, x: torch.Tensor) -> torch.Tensor:
    """log p(x) of a model with latents z1 (top, 1-d) and z0 (1-d), by a 2-d grid sum: (B,) float64."""
    z1 = torch.linspace(-8, 8, 641)
    z0 = torch.linspace(-14, 14, 1121)
    with torch.no_grad():
        p = model.prior(0, z1[:, None])  # p(z0 | z1) for every grid z1: (n1, 1)
        log_p0 = -0.5 * (math.log(2 * math.pi) + p.logvar + (z0[None] - p.mu) ** 2 * torch.exp(-p.logvar))  # (n1, n0)
        log_p1 = -0.5 * (math.log(2 * math.pi) + z1**2)  # (n1,)
        logits = model.decode(z0[:, None])  # (n0, 1, 2, 3)
        log_px_z = torch.stack([log_likelihood(logits, xi.expand_as(logits), "bernoulli") for xi in x])  # (B, n0)
        joint = (log_px_z[:, None, :] + log_p0[None] + log_p1[None, :, None]).double()  # (B, n1, n0)
    # the grid must hold all the mass: the integrand at its edges is negligible
    edges = torch.cat([joint[:, [0, -1], :].flatten(1), joint[:, :, [0, -1]].flatten(1)], 1)
    assert (edges.max(1).values - joint.flatten(1).max(1).values).max() < -25
    return torch.logsumexp(joint.flatten(1), 1) + math.log((z1[1] - z1[0]).item() * (z0[1] - z0[0]).item())


TINY = ModelConfig([LayerSpec("dense", (8,), 1), LayerSpec("dense", (8,), 1)], image_shape=(1, 2, 3), likelihood="bernoulli")


@pytest.mark.slow
@pytest.mark.parametrize("kind", [LadderVAE, HierarchicalVAE])
def test_iw_estimate_converges_to_the_exact_marginal(kind):
    torch.manual_seed(0)
    model = kind(TINY).eval()
    x = torch.bernoulli(torch.full((16, 1, 2, 3), 0.5))
    exact = quadrature_log_px(model, x)
    iw = iw_log_likelihood(model, x, 20000, "bernoulli", chunk=50000)
    elbo = iw_log_likelihood(model, x, 1, "bernoulli")  # one sample per image: an ELBO draw
    assert (iw.per_image - exact).abs().max() < 0.1
    assert abs(-iw.nll - exact.mean().item()) < 0.03
    assert iw.elbo_mc < exact.mean().item() - 0.05 and abs(-elbo.nll - iw.elbo_mc) < 0.6  # the ELBO is clearly looser


@pytest.mark.parametrize("kind", [LadderVAE, HierarchicalVAE])
def test_the_training_elbo_is_below_the_exact_marginal(kind):
    """The loss's ELBO (closed-form or one-sample KL) against log p(x) by quadrature."""
    torch.manual_seed(1)
    model = kind(TINY).eval()
    x = torch.bernoulli(torch.full((8, 1, 2, 3), 0.5))
    exact = quadrature_log_px(model, x).mean().item()
    reps = x.repeat(500, 1, 1, 1)  # 500 draws per image
    elbo = split_elbo(model, reps, "bernoulli")["elbo"]
    lw = importance_log_weights(model, x, 500, "bernoulli")
    noise = lw.std(1).mean().item() / math.sqrt(len(reps))
    assert elbo < exact - 10 * noise  # a bound, clearly below here (an untrained model)
    assert abs(elbo - lw.mean().item()) < 5 * math.sqrt(2) * noise + 1e-3  # the same bound as E[log w]


def test_iw_estimate_is_exact_for_a_top_latent_vae_too():
    model = TopLatentVAE(TINY).eval()  # one stochastic latent (the top); the lower rung passes its prior mean on
    x = torch.bernoulli(torch.full((8, 1, 2, 3), 0.5))
    z = torch.linspace(-9, 9, 4001)
    with torch.no_grad():
        logits = model.decode(model.prior(0, z[:, None]).mu)
        lp = torch.stack([log_likelihood(logits, xi.expand_as(logits), "bernoulli") for xi in x]).double()
    exact = torch.logsumexp(lp - 0.5 * (math.log(2 * math.pi) + z.double() ** 2), 1) + math.log((z[1] - z[0]).item())
    iw = iw_log_likelihood(model, x, 20000, "bernoulli", chunk=50000)
    assert (iw.per_image - exact).abs().max() < 0.05


# ----------------------------------------------------------------------------- the bound in K


@pytest.mark.parametrize("make", [lambda: LadderVAE(dense_config(3)), lambda: LadderVAE(conv_config(2, "bernoulli")),
                                  lambda: HierarchicalVAE(dense_config(3)), lambda: HierarchicalVAE(conv_config(2, "bernoulli"))])
def test_k_equal_one_is_the_elbo_in_expectation(make):
    model = make().eval()
    x = tiny_images(16).repeat(40, 1, 1, 1)  # 40 independent draws per image
    iw = iw_log_likelihood(model, x, 1, "bernoulli")
    elbo = split_elbo(model, x, "bernoulli")["elbo"]
    # both are unbiased for the same ELBO; compare within the sampling noise of the difference
    lw = importance_log_weights(model, x[:16], 40, "bernoulli")
    noise = lw.std(1).mean().item() / math.sqrt(len(x))
    assert abs(-iw.nll - elbo) < 5 * math.sqrt(2) * noise + 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("kind", [LadderVAE, HierarchicalVAE])
def test_estimate_does_not_rise_with_k(kind):
    torch.manual_seed(0)
    model = kind(dense_config(3)).eval()
    x = tiny_images(32)
    nll = {k: iw_log_likelihood(model, x, k, "bernoulli", chunk=2000).nll for k in (1, 10, 100, 1000)}
    assert nll[1] > nll[10] > nll[100] > nll[1000] - 0.05, nll  # the bound tightens as K grows
    assert nll[1] - nll[1000] > 1.0, nll  # and on an untrained model by a clear margin


def test_pass_width_follows_the_device_memory():
    from lvae.evaluation import CHUNK_FLOATS, activation_budget, auto_chunk

    cfg = paper_config().model
    model = build_model("lvae", cfg).eval()
    x = torch.zeros(1, *cfg.image_shape)
    assert activation_budget(torch.device("cpu")) == 4 * CHUNK_FLOATS
    gpu = activation_budget(torch.device("cuda"), free_bytes=80 * 2**30)  # an idle H100
    assert gpu == 80 * 2**30 // 64
    assert activation_budget(torch.device("cuda"), free_bytes=2**20) == 4 * CHUNK_FLOATS  # never below the CPU's
    largest = 4 * 784  # bytes: the output logits of one image are the widest activation of the dense ladder
    assert auto_chunk(model, x) == 4 * CHUNK_FLOATS // largest
    assert auto_chunk(model, x, budget_bytes=gpu) == gpu // largest  # ~100x wider passes on the GPU


@pytest.mark.slow
def test_chunking_changes_memory_not_the_result():
    model = LadderVAE(dense_config(2)).eval()
    x = tiny_images(6)
    torch.manual_seed(1)
    a = importance_log_weights(model, x, 50, "bernoulli", chunk=10_000)  # one pass
    torch.manual_seed(1)
    b = importance_log_weights(model, x, 50, "bernoulli", chunk=7)  # 50 passes of one sample each
    assert a.shape == b.shape == (6, 50) and a.dtype == torch.float64
    assert torch.allclose(a.mean(1), b.mean(1), atol=5 * math.sqrt(2) * a.std(1).max().item() / math.sqrt(50))


# ----------------------------------------------------------------------------- active units


class KnownActivity(HierarchicalModel):
    """A stand-in model whose posterior means are known: unit 0 copies the first pixel,
    unit 1 is pure noise (its mean ignores x), unit 2 is constant."""

    def __init__(self):
        super().__init__(dense_config(1), [True])

    def forward(self, x, repeats=1):
        b = len(x) * repeats
        pixel = x.flatten(1)[:, :1].repeat_interleave(repeats, 0)
        mu = torch.cat([pixel, torch.randn(b, 1), torch.full((b, 1), 3.0)], 1)
        q = Gaussian(mu, torch.zeros_like(mu))
        return ModelOutput(torch.zeros(b, 1, 28, 28), [LatentSample(0, q, Gaussian.standard(mu), mu, q)])


def test_active_units_are_unbiased_on_a_known_answer():
    torch.manual_seed(0)
    x = torch.rand(4000, 1, 28, 28)
    active, units, activity = active_units(KnownActivity().eval(), x, samples=10)
    a = activity[0]
    # the copy reads the pixel's variance (1/12 for uniform pixels), the noise and the constant read 0
    assert abs(a[0].item() - x[:, 0, 0, 0].double().var().item()) < 1e-9
    assert abs(a[1].item()) < 0.01  # its std here is sqrt(2) / 10 / sqrt(4000) ~ 0.002
    assert a[2].item() == 0.0
    assert units == [3] and active == [1]
    # the old estimator, the variance of one 10-sample mean, reads the noise unit's 1/10 as activity
    noisy_mean = torch.randn(4000, 10).mean(1).double()
    assert noisy_mean.var() > 0.05 and abs(unbiased_activity(noisy_mean, torch.randn(4000, 10).mean(1).double())) < 0.01


def test_active_units_of_a_ladder_follow_the_definition():
    model = LadderVAE(dense_config(2)).eval()
    mu_rows = model.enc_heads[-1].net[0]  # Linear to (mu, raw var) of the top latent (12 units)
    with torch.no_grad():
        mu_rows.weight[:12] *= 20.0
        mu_rows.weight[:4] = 0.0  # units 0-3: the mean ignores x, so they are inactive
        mu_rows.bias[:4] = 1.0
    x = tiny_images(64)
    active, units, activity = active_units(model, x)
    assert units == [16, 12]
    assert active[1] == 8
    assert torch.all(activity[1][:4].abs() < 1e-12)
    top_means = model.bottom_up(x)[-1].mu.double()  # deterministic at the top: the two means agree
    assert torch.allclose(activity[1], top_means.var(0), rtol=1e-4)


def test_a_top_latent_vae_has_units_only_at_the_top():
    active, units, activity = active_units(TopLatentVAE(dense_config(3)).eval(), tiny_images(16))
    assert units == [8] and len(activity) == 1


# ----------------------------------------------------------------------------- command line


@pytest.mark.slow
def test_cli_evaluate_json(tmp_path, tiny_data, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", "paper", "--epochs", "1", "--batch-size", "64", "--data-root", str(tiny_data),
                 "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--iw-samples", "20", "--prior-samples", "200", "--data-root", str(tiny_data),
                 "--json", "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["iw_samples"] == 20 and r["images"] == 64 and r["layer_order"] == "bottom first"
    assert len(r["kl_per_layer"]) == len(r["active_units"]) == 5
    assert r["nll"] <= -r["elbo"] + 5 * r["nll_stderr"]
    assert len(r["per_image_log_px"]) == 64 and abs(-sum(r["per_image_log_px"]) / 64 - r["nll"]) < 1e-3
    assert len(r["class_histogram"]) == 10 and abs(sum(r["class_histogram"]) - 1) < 1e-9
    assert 0 <= r["class_kl_to_uniform"] <= math.log(10) + 1e-9 and r["fid_mnist"] >= 0
    assert [len(u) for u in r["kl_units"]] == [64, 32, 16, 8, 4] and r["latent_layers"] == [0, 1, 2, 3, 4]
    assert abs(sum(r["kl_units"][0]) - r["kl_per_layer"][0]) < 1e-6


def test_cli_evaluate_refuses_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:  # refused while the flags are parsed (lvae.flags), before any work
        main(["evaluate", str(tmp_path / "nothing")])
    assert refused.value.code == 2 and "nothing does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty")]) == 2
    assert "not a run folder" in capsys.readouterr().err
