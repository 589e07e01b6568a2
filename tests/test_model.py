"""Shapes at every depth, the two passes, generation, and the losses."""

import pytest
import torch

from lvae import HierarchicalVAE, LadderVAE, TopLatentVAE, paper_config, seed_config
from lvae.config import ConfigError, validate
from lvae.losses import compute_loss, kl_per_layer, log_likelihood
from conftest import conv_config, dense_config


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("make", [dense_config, conv_config])
@pytest.mark.parametrize("kind", [LadderVAE, HierarchicalVAE])
def test_output_shapes_at_every_depth(depth, make, kind):
    model = kind(make(depth))
    x = torch.rand(3, 1, 28, 28)
    out = model(x)
    assert out.x_logits.shape == x.shape
    assert [layer.layer for layer in out.latents] == list(range(depth)) == model.latent_layers
    for layer, shape in zip(out.latents, model.latent_shapes):
        assert layer.z.shape == layer.q.mu.shape == layer.p.logvar.shape == (3, *shape)
    assert model.generate(4).shape == (4, 1, 28, 28)
    assert len(kl_per_layer(out)) == depth
    assert model(x, repeats=4).x_logits.shape == (12, 1, 28, 28)


def test_seed_model_has_a_spatial_inner_latent_and_a_dense_top():
    model = LadderVAE(seed_config().model)
    assert model.latent_shapes == [(8, 7, 7), (16,)]


def test_paper_model_matches_the_paper():
    model = LadderVAE(paper_config().model)
    assert model.latent_shapes == [(64,), (32,), (16,), (8,), (4,)]
    widths = [m.out_features for m in model.up.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [512, 512, 256, 256, 128, 128, 64, 64, 32, 32]


def test_bottom_up_pass_is_deterministic():
    model = LadderVAE(seed_config().model).eval()
    x = torch.rand(5, 1, 28, 28)
    a, b = model.bottom_up(x), model.bottom_up(x)
    torch.manual_seed(123)  # a different RNG state changes nothing either
    c = model.bottom_up(x)
    for ga, gb, gc in zip(a, b, c):
        assert torch.equal(ga.mu, gb.mu) and torch.equal(ga.logvar, gb.logvar)
        assert torch.equal(ga.mu, gc.mu) and torch.equal(ga.logvar, gc.logvar)


@pytest.mark.slow
def test_top_down_pass_samples_the_merged_gaussian():
    model = LadderVAE(seed_config().model).eval()
    enc = model.bottom_up(torch.rand(1, 1, 28, 28))
    torch.manual_seed(0)
    # the top is fixed so the bottom layer's merged Gaussian is the same in every draw
    enc_top_fixed = enc[:-1] + [type(enc[-1])(enc[-1].mu, torch.full_like(enc[-1].logvar, -60.0))]
    draws = torch.stack([model.top_down(enc_top_fixed).latents[0].z[0] for _ in range(4000)])  # (4000, 8, 7, 7)
    q = model.top_down(enc_top_fixed).latents[0].q
    # sample moments match the merged Gaussian (4000 draws: the mean's error is sigma/63)
    assert ((draws.mean(0) - q.mu[0]).abs() / q.std[0]).max() < 0.1
    assert ((draws.std(0) / q.std[0]) - 1).abs().max() < 0.1


def test_generation_never_calls_the_encoder(monkeypatch):
    model = LadderVAE(dense_config(3))

    def boom(*args, **kwargs):
        raise AssertionError("the encoder was called during generation")

    monkeypatch.setattr(model, "bottom_up", boom)
    for head in model.enc_heads:
        head.register_forward_pre_hook(lambda *a: boom())
    for block in model.up:
        block.register_forward_pre_hook(lambda *a: boom())
    images = model.generate(6, temperature=0.7)
    assert images.shape == (6, 1, 28, 28) and images.min() >= 0 and images.max() <= 1


def test_generation_at_zero_temperature_is_deterministic():
    model = LadderVAE(dense_config(3)).eval()
    assert torch.equal(model.generate(2, temperature=0.0), model.generate(2, temperature=0.0))


def test_top_latent_vae_has_one_latent_and_the_same_trunk():
    cfg = seed_config().model
    vae, lvae = TopLatentVAE(cfg), LadderVAE(cfg)
    out = vae(torch.rand(2, 1, 28, 28))
    assert [layer.layer for layer in out.latents] == [1] == vae.latent_layers
    assert torch.all(kl_per_layer(out)[0] > 0)
    n = lambda m: sum(p.numel() for p in m.up.parameters())  # noqa: E731
    assert n(vae) == n(lvae)


def test_hierarchical_vae_infers_bottom_up_from_samples():
    """Each up block of the hierarchical VAE reads the sample of the layer below, not features."""
    model = HierarchicalVAE(dense_config(3)).eval()
    seen = []
    model.up[1].register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]))
    torch.manual_seed(0)
    out = model(torch.rand(2, 1, 28, 28))
    assert torch.equal(seen[0], out.latents[0].z)
    assert [layer.closed_form_kl for layer in out.latents] == [False, False, True]
    # its prior path is the ladder's: the same modules in the same places
    assert model.prior_heads[0].net[0].in_features == LadderVAE(dense_config(3)).prior_heads[0].net[0].in_features


def test_seed_kl_mode_is_for_the_ladder_only():
    cfg = seed_config()
    cfg.objective.kl_mode, cfg.model_kind = "seed", "hvae"
    with pytest.raises(ConfigError, match="no merge"):
        validate(cfg)


def test_paper_mode_is_a_true_elbo_and_seed_mode_differs():
    model = LadderVAE(dense_config(3))
    x = torch.bernoulli(torch.rand(8, 1, 28, 28))
    torch.manual_seed(0)
    out = model(x)
    paper = kl_per_layer(out, "paper")
    seed = kl_per_layer(out, "seed")
    torch.testing.assert_close(paper[-1], seed[-1])  # the top is the same: KL to N(0, I)
    assert not torch.allclose(paper[0], seed[0])
    # paper: KL(q || p) of the merged posterior against the decoder's prior
    bottom = out.latents[0]
    ref = torch.distributions.kl_divergence(bottom.q.to_distribution(), bottom.p.to_distribution())
    torch.testing.assert_close(paper[0], ref)
    ref_seed = torch.distributions.kl_divergence(bottom.q.to_distribution(), bottom.q_hat.to_distribution())
    torch.testing.assert_close(seed[0], ref_seed)


def test_loss_terms_and_free_bits():
    model = LadderVAE(dense_config(2))
    x = torch.bernoulli(torch.rand(8, 1, 28, 28))
    out = model(x)
    t = compute_loss(out, x, "bernoulli", beta=0.5)
    torch.testing.assert_close(t.loss, t.recon + 0.5 * sum(t.kl))
    torch.testing.assert_close(t.elbo, -(t.recon + sum(t.kl)).detach())
    fb = compute_loss(out, x, "bernoulli", beta=1.0, free_bits=1e6)
    torch.testing.assert_close(fb.loss, fb.recon + 2e6)


def test_gaussian_likelihood_is_the_mse_plus_a_constant():
    x, logits = torch.rand(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    sse = ((x - torch.sigmoid(logits)) ** 2).flatten(1).sum(1)
    const = 0.5 * 784 * torch.log(torch.tensor(torch.pi))
    torch.testing.assert_close(-log_likelihood(logits, x, "gaussian", 0.5), sse + const)


def test_bernoulli_likelihood_matches_torch_distributions():
    x, logits = torch.bernoulli(torch.rand(4, 1, 28, 28)), torch.randn(4, 1, 28, 28)
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(log_likelihood(logits, x, "bernoulli"), ref)


def test_sample_below_keeps_the_given_layer_and_draws_the_rest_from_the_priors():
    model = LadderVAE(dense_config(3)).eval()
    z_top = torch.zeros(2, *model.latent_shapes[-1])
    # at temperature 0 every prior draw is its mean: generation from the top equals sample_below of z_top = 0
    torch.testing.assert_close(model.sample_below(z_top, 2, temperature=0.0), model.generate(2, temperature=0.0))
    z1 = torch.randn(1, *model.latent_shapes[1]).expand(3, -1)
    torch.manual_seed(0)
    a = model.sample_below(z1, 1)
    torch.manual_seed(0)
    expected = torch.sigmoid(model.decode(model.prior(0, z1).sample()))  # only z0 is drawn, from p(z0 | z1)
    torch.testing.assert_close(a, expected)


def test_with_one_stochastic_layer_the_ladder_is_the_hierarchical_vae():
    """Nothing to merge at L = 1: same weights from the same seed, same pass from the same noise (the depth sweep's L = 1)."""
    cfg = dense_config(1, batch_norm=True)
    x = torch.bernoulli(torch.rand(8, 1, 28, 28))
    outs = []
    for cls in (LadderVAE, HierarchicalVAE):
        torch.manual_seed(0)
        model = cls(cfg).train()
        torch.manual_seed(1)
        outs.append((model.state_dict(), compute_loss(model(x), x, "bernoulli", 1.0, "paper", 0.0, 0.5).elbo))
    (sd_l, elbo_l), (sd_h, elbo_h) = outs
    assert sd_l.keys() == sd_h.keys() and all(torch.equal(sd_l[k], sd_h[k]) for k in sd_l)
    assert torch.equal(elbo_l, elbo_h)
    cfg2 = dense_config(2, batch_norm=True)  # from two layers on, the inference differs
    torch.manual_seed(0)
    ladder = LadderVAE(cfg2).train()
    torch.manual_seed(0)
    hvae = HierarchicalVAE(cfg2).train()
    assert ladder.up[1][0].in_features != hvae.up[1][0].in_features  # the VAE's up block reads z0, the ladder's d0
