"""The vectorised log1p family against float64: as accurate as torch's own, and torch's own wherever gradients flow."""

import math

import pytest
import torch
import torch.nn.functional as F

from lvae.config import named_config
from lvae.elementwise import log1p, log_sigmoid, logaddexp, softplus
from lvae.evaluation import importance_log_weights
from lvae.model import build_model

# Every float32 scale: dense near 0, out to where exp under- and overflows, and beyond.
Z = torch.cat([torch.linspace(-200, 200, 400001), torch.tensor([-104.0, -88.7, 88.7, 104.0, -3e38, 3e38])])


def close_to(got: torch.Tensor, reference: torch.Tensor) -> bool:
    """Within 2e-7 of the answer's size, or 1e-7 absolute: a float32 ulp or two, torch's own accuracy."""
    return bool(((got.double() - reference).abs() <= 1e-7 + 2e-7 * reference.abs()).all())


def test_log1p_keeps_full_relative_accuracy_for_tiny_and_large_arguments():
    u = torch.cat([torch.logspace(-38, 30, 20001), -torch.logspace(-38, math.log10(0.999), 20001)])
    got, reference = log1p(u).double(), torch.log1p(u.double())
    assert ((got - reference).abs() <= 2.5e-7 * reference.abs()).all()
    assert (log1p(torch.zeros(3)) == 0).all()


@pytest.mark.parametrize("ours, reference", [(log_sigmoid, F.logsigmoid), (softplus, F.softplus)])
def test_log_sigmoid_and_softplus_match_float64_at_every_scale(ours, reference):
    got = ours(Z)
    assert torch.isfinite(got[:-1]).all()  # softplus(3e38) = 3e38 is finite too; log_sigmoid(-3e38) is -3e38
    assert close_to(got, reference(Z.double()))


def test_logaddexp_matches_float64_and_handles_equal_and_infinite_arguments():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200000, generator=g) * torch.logspace(-3, 3, 200000)
    b = torch.randn(200000, generator=g) * torch.logspace(3, -3, 200000)
    assert close_to(logaddexp(a, b), torch.logaddexp(a.double(), b.double()))
    inf = float("inf")
    x = torch.tensor([-inf, inf, -inf, 0.0, 5.0])
    y = torch.tensor([-inf, inf, 0.0, -inf, 5.0])
    assert torch.equal(logaddexp(x, y), torch.logaddexp(x, y))


@pytest.mark.parametrize("ours, reference", [(log_sigmoid, F.logsigmoid), (softplus, F.softplus), (log1p, torch.log1p)])
def test_where_gradients_flow_the_value_and_gradient_are_torch_own_bit_for_bit(ours, reference):
    """Training calls these with gradients: it must be bit-identical to the runs trained before they existed."""
    z = (Z[::97].clamp(-0.99, None) if ours is log1p else Z[::97]).clone().requires_grad_(True)
    z_ref = z.detach().clone().requires_grad_(True)
    ours(z).sum().backward()
    reference(z_ref).sum().backward()
    assert torch.equal(ours(z).detach(), reference(z_ref).detach())
    assert torch.equal(z.grad, z_ref.grad)


def test_an_importance_weighted_pass_without_gradients_gives_the_log_weights_of_one_with_them():
    """The fast path is what evaluation runs: per draw, the same log-weights as torch's functions to float32 rounding."""
    cfg = named_config("paper")
    torch.manual_seed(0)
    model = build_model(cfg.model_kind, cfg.model).eval()
    x = torch.bernoulli(torch.rand(3, *cfg.model.image_shape, generator=torch.Generator().manual_seed(1)))
    torch.manual_seed(2)
    fast = importance_log_weights(model, x, 50, "bernoulli", chunk=150)  # one pass: the same draws as below
    torch.manual_seed(2)
    with torch.enable_grad():
        from lvae.losses import log_weights

        reference = log_weights(model(x, repeats=50), x, "bernoulli").double()
    assert fast.shape == reference.shape == (3, 50)
    assert (fast - reference.detach()).abs().max() < 1e-3  # nats, out of log-weights of about -550
    assert not torch.equal(fast, reference.detach())  # the two paths really differ: this compares something
