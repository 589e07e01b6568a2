"""The Bernoulli likelihood against float64 references: finite in value and gradient for every float32 logit."""

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli

from lvae.config import LayerSpec, ModelConfig
from lvae.data import synthetic_split
from lvae.elementwise import log_sigmoid
from lvae.losses import bernoulli_log_prob, compute_loss
from lvae.model import build_model

# Every float32 scale a logit can take: dense near 0, then out to where sigmoid underflows (|z| >= 89) and beyond.
LOGITS = torch.cat([torch.linspace(-1000, 1000, 200001), torch.tensor([-89.0, -88.7, -103.9, -104.0, 88.7, 89.0, -3e38, 3e38])])


def test_log_sigmoid_matches_float64_in_value_over_every_float32_scale():
    got = log_sigmoid(LOGITS).double()
    reference = F.logsigmoid(LOGITS.double())
    assert torch.isfinite(got).all()
    # relative to the answer's size, or 1e-6 absolute near 0 (where float32 itself rounds sigmoid(z) to 1)
    assert ((got - reference).abs() <= 1e-6 + 2e-7 * reference.abs()).all()


def test_log_sigmoid_gradient_is_finite_and_matches_float64():
    z = LOGITS.clone().requires_grad_(True)
    log_sigmoid(z).sum().backward()
    reference = torch.sigmoid(-LOGITS.double())  # d/dz log sigmoid(z)
    assert torch.isfinite(z.grad).all()
    assert (z.grad.double() - reference).abs().max() < 1e-6


def test_bernoulli_log_prob_is_finite_in_gradient_for_huge_logits():
    """The failure this replaces: a logit >= 89 gave a NaN gradient through log(sigmoid(-89)) = log(0)."""
    logits = torch.tensor([-1000.0, -200.0, -89.0, 89.0, 200.0, 1000.0], requires_grad=True)
    for x in (torch.zeros(6), torch.ones(6), torch.full((6,), 0.5)):
        logits.grad = None
        lp = bernoulli_log_prob(logits, x)
        lp.sum().backward()
        reference = -F.binary_cross_entropy_with_logits(logits.detach().double(), x.double(), reduction="none")
        assert torch.isfinite(lp).all() and torch.isfinite(logits.grad).all()
        assert torch.allclose(lp.double(), reference, rtol=1e-6, atol=1e-6)
        assert torch.allclose(logits.grad.double(), x.double() - torch.sigmoid(logits.detach().double()), atol=1e-6)


@pytest.mark.parametrize("bias", [200.0, -200.0])
def test_a_model_whose_output_layer_saturates_has_a_finite_loss_and_finite_gradients(bias):
    torch.manual_seed(0)
    model = build_model("lvae", ModelConfig([LayerSpec("dense", (16,), 4), LayerSpec("dense", (8,), 2)], likelihood="bernoulli"))
    head = model.out_head.net[0]
    with torch.no_grad():
        head.bias.fill_(bias)  # every pixel logit near +-200: sigmoid is exactly 0 or 1 in float32
    x = torch.bernoulli(synthetic_split(8, 0).images, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert (out.x_logits.abs() > 150).all()
    terms = compute_loss(out, x, "bernoulli", beta=1.0)
    terms.loss.backward()
    assert torch.isfinite(terms.loss) and terms.loss > 1000  # a wrong pixel costs ~200 nats: large, but a number
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert grads and all(torch.isfinite(g).all() for g in grads.values()), [n for n, g in grads.items() if not torch.isfinite(g).all()]
    assert head.bias.grad.abs().sum() > 0  # the saturated pixels still pull the logits back


def test_bernoulli_log_prob_matches_torch_distributions_for_binary_and_grey_pixels():
    g = torch.Generator().manual_seed(0)
    logits = 8 * torch.randn(512, 784, generator=g)
    for x in (torch.bernoulli(torch.rand(512, 784, generator=g), generator=g), torch.rand(512, 784, generator=g)):
        reference = -F.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none").sum(1)
        got = bernoulli_log_prob(logits, x).sum(1).double()
        assert (got - reference).abs().max() < 1e-3  # summed over 784 float32 pixels
    binary = torch.bernoulli(torch.rand(64, 784, generator=g), generator=g)
    assert torch.allclose(bernoulli_log_prob(logits[:64], binary), Bernoulli(logits=logits[:64]).log_prob(binary), atol=1e-5)


@pytest.mark.parametrize("scale", [1e-4, 1.0, 8.0, 60.0])
def test_the_summed_bernoulli_likelihood_without_gradients_matches_float64_and_the_gradient_path(scale):
    """The in-place no-grad path (what the IW bound scores) against float64, and against the composed path training takes;
    images broadcast against R draws each, as the IW passes call it."""
    from lvae.losses import log_likelihood

    g = torch.Generator().manual_seed(1)
    logits = scale * torch.randn(3, 5, 1, 28, 28, generator=g)
    for x in (torch.bernoulli(torch.rand(3, 1, 1, 28, 28, generator=g), generator=g), torch.rand(3, 1, 1, 28, 28, generator=g)):
        reference = -F.binary_cross_entropy_with_logits(logits.double(), x.double().expand_as(logits), reduction="none").flatten(2).sum(-1)
        fast = log_likelihood(logits, x, "bernoulli")
        composed = log_likelihood(logits.clone().requires_grad_(), x, "bernoulli").detach()
        assert fast.shape == (3, 5)
        tolerance = 1e-5 * max(1.0, reference.abs().max().item())  # float32 rounding of a 784-term sum
        assert (fast.double() - reference).abs().max() < tolerance
        assert (fast - composed).abs().max() < tolerance
