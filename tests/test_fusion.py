"""Batch norm folded for evaluation: the same log-weights, fewer layers, and the model itself untouched."""

import pytest
import torch
from torch import nn

from lvae.config import named_config
from lvae.evaluation import importance_log_weights
from lvae.fusion import folded_for_inference
from lvae.model import build_model

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def trained_statistics(name: str, batch_norm: bool):
    """A model whose batch-norm statistics and affine parameters are far from their initial values."""
    cfg = named_config(name)
    cfg.model.batch_norm = batch_norm
    torch.manual_seed(0)
    model = build_model(cfg.model_kind, cfg.model).train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, NORMS):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1.0, 1.0)
        for _ in range(3):
            model(torch.rand(32, *cfg.model.image_shape).bernoulli() * 3)
    return cfg, model


@pytest.mark.parametrize("name", ["paper", "seed"])  # Linear -> BatchNorm1d (the MLP ladder); Conv2d and ConvTranspose2d -> BatchNorm2d (the seed)
def test_folded_model_gives_the_same_log_weights_with_no_batch_norm_left(name):
    cfg, model = trained_statistics(name, batch_norm=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms = sum(isinstance(m, NORMS) for m in model.modules())
    folded = folded_for_inference(model)
    assert norms > 0 and sum(isinstance(m, NORMS) for m in folded.modules()) == 0
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    x = torch.rand(3, *cfg.model.image_shape, generator=torch.Generator().manual_seed(1)).bernoulli()
    model.eval()
    torch.manual_seed(2)
    reference = importance_log_weights(model, x, 40, cfg.model.likelihood, chunk=120)
    torch.manual_seed(2)
    got = importance_log_weights(folded, x, 40, cfg.model.likelihood, chunk=120)
    assert (got - reference).abs().max() < 1e-3 * reference.abs().max()
    assert not torch.equal(got, reference)  # the weights really changed: this compares two computations
