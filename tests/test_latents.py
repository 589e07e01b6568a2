"""The Gaussian algebra against closed forms and torch.distributions."""

import torch
from torch.distributions import Normal, kl_divergence

from lvae import merge_gaussians
from lvae.latents import Gaussian, GaussianHead, gaussian_kl


def test_merge_matches_precision_weighted_closed_form():
    g = torch.Generator().manual_seed(1)
    mu_q, mu_p = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    lv_q, lv_p = 3 * torch.randn(4, 3, 5, 5, generator=g), 3 * torch.randn(4, 3, 5, 5, generator=g)
    mu, lv = merge_gaussians(mu_q, lv_q, mu_p, lv_p)
    var_q, var_p = lv_q.double().exp(), lv_p.double().exp()
    var = 1 / (1 / var_q + 1 / var_p)
    expected_mu = var * (mu_q.double() / var_q + mu_p.double() / var_p)
    torch.testing.assert_close(lv.double(), var.log(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mu.double(), expected_mu, rtol=1e-5, atol=1e-5)


def test_merge_is_the_product_of_the_two_densities():
    # N(z; q) N(z; p) is proportional to N(z; merged): the log-ratio is constant in z.
    mu_q, lv_q, mu_p, lv_p = torch.tensor([0.3]), torch.tensor([0.5]), torch.tensor([-1.0]), torch.tensor([-0.7])
    merged = Gaussian(*merge_gaussians(mu_q, lv_q, mu_p, lv_p))
    z = torch.linspace(-3, 3, 7)[:, None]
    ratio = Gaussian(mu_q, lv_q).log_prob(z) + Gaussian(mu_p, lv_p).log_prob(z) - merged.log_prob(z)
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-5)


def test_merge_is_stable_for_extreme_variances():
    mu, lv = merge_gaussians(torch.zeros(3), torch.tensor([-40.0, 0.0, 40.0]), torch.ones(3), torch.tensor([40.0, 0.0, -40.0]))
    assert torch.isfinite(mu).all() and torch.isfinite(lv).all()
    torch.testing.assert_close(mu, torch.tensor([0.0, 0.5, 1.0]))


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(2)
    mu_q, mu_p, lv_q, lv_p = (torch.randn(6, 10, generator=g) for _ in range(4))
    ours = gaussian_kl(mu_q, lv_q, mu_p, lv_p)
    ref = kl_divergence(Normal(mu_q, (0.5 * lv_q).exp()), Normal(mu_p, (0.5 * lv_p).exp()))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    q, p = Gaussian(mu_q, lv_q), Gaussian(mu_p, lv_p)
    torch.testing.assert_close(q.kl(p), kl_divergence(q.to_distribution(), p.to_distribution()), rtol=1e-5, atol=1e-5)


def test_log_prob_matches_torch_distributions():
    q = Gaussian(torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4))
    z = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(q.log_prob(z), q.to_distribution().log_prob(z), rtol=1e-5, atol=1e-5)


def test_sample_is_reparameterised_and_has_the_right_moments():
    mu, lv = torch.full((200_000,), 2.0, requires_grad=True), torch.full((200_000,), 0.0, requires_grad=True)
    z = Gaussian(mu, lv).sample(temperature=0.5)
    assert abs(z.mean().item() - 2.0) < 0.01 and abs(z.std().item() - 0.5) < 0.01
    z.sum().backward()
    assert mu.grad is not None and lv.grad is not None


def test_heads_keep_the_spatial_shape_and_floor_the_variance():
    conv = GaussianHead((8, 7, 7), (3, 7, 7), var_floor=1e-4)(torch.randn(2, 8, 7, 7))
    assert conv.mu.shape == (2, 3, 7, 7) and conv.logvar.shape == (2, 3, 7, 7)
    head = GaussianHead((16,), (4, 7, 7), var_floor=1e-3)
    with torch.no_grad():
        head.net[0].bias.fill_(-1e4)  # drive the raw variance far negative
    g = head(torch.zeros(2, 16))
    assert g.mu.shape == (2, 4, 7, 7)
    assert torch.all(g.logvar >= torch.log(torch.tensor(1e-3)) - 1e-6)
