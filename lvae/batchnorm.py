"""Batch-norm statistics from the whole training set, as the paper's code sets them before testing.

During training, batch norm keeps running averages of the batch statistics, each weighted
towards the last few hundred batches of weights that kept changing. The paper's code
(`f_collect` in casperkaae/LVAE) instead recomputes them, before every test evaluation, from
the training set passed through the current weights. `recompute_batch_norm` does the same:
each layer's statistics become the average over the training set of its per-batch mean and
(unbiased) variance, with the model's noise and binarization drawn from a generator of their
own, so training's random streams are untouched and a resumed run still repeats exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lvae.data import binarize

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def batch_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BATCH_NORMS)]


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, images: Tensor, likelihood: str, seed: int, batch_size: int = 1000) -> int:
    """Reset every batch-norm layer's running statistics to their average over `images` (the training
    set, intensities in [0, 1]; binarized once, seeded, for a Bernoulli model). Returns the number of
    layers reset (0: the model has no batch norm, nothing is done)."""
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in layers]
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        generator = torch.Generator(images.device).manual_seed(seed)
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        model.train()
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size]
            x = binarize(x, generator) if likelihood == "bernoulli" else x
            model(x.to(device))
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.train(was_training)
    return len(layers)
