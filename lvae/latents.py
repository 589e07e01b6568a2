"""Diagonal Gaussian latents: the parameter heads, the precision-weighted merge, and KL.

Every Gaussian is held as (mu, logvar), elementwise, any shape (B, D) or (B, C, H, W).
Heads produce the variance as softplus(raw) + var_floor, so a variance is never zero
and the precisions used by the merge never overflow.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from lvae.elementwise import logaddexp, softplus

LOG_2PI = math.log(2 * math.pi)
_noise = threading.local()


@contextmanager
def noise_from(generator: torch.Generator | None) -> Iterator[None]:
    """Draw every latent sample of this thread from `generator` inside the block (None: the global RNG).

    Why: a pass that is not training (the per-epoch test ELBO) then leaves the training noise
    alone, so how often it runs cannot change what the run learns.
    """
    before = getattr(_noise, "generator", None)
    _noise.generator = generator
    try:
        yield
    finally:
        _noise.generator = before


def standard_normal_like(t: Tensor) -> Tensor:
    """N(0, I) noise shaped (and laid out) like `t`, from `noise_from`'s generator if one is set: torch.randn_like otherwise."""
    return torch.empty_like(t).normal_(generator=getattr(_noise, "generator", None))


@dataclass
class Gaussian:
    """A diagonal Gaussian over every non-batch dimension."""

    mu: Tensor
    logvar: Tensor

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, temperature: float = 1.0) -> Tensor:
        """Reparameterised draw: mu + T * sigma * eps, differentiable in mu and logvar."""
        return self.mu + temperature * self.std * standard_normal_like(self.mu)

    def log_density(self, z: Tensor) -> Tensor:
        """log N(z; mu, sigma^2) elementwise, same shape as z."""
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mu) ** 2 * torch.exp(-self.logvar))

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; mu, sigma^2) summed over all but the batch dimension -> (B,)."""
        return self.log_density(z).flatten(1).sum(1)

    def kl(self, other: "Gaussian") -> Tensor:
        """Analytic KL(self || other), summed over all but the batch dimension -> (B,)."""
        return gaussian_kl(self.mu, self.logvar, other.mu, other.logvar).flatten(1).sum(1)

    def expand(self, k: int) -> "Gaussian":
        """Repeat each batch element k times (for importance sampling): (B, ...) -> (B*k, ...)."""
        return Gaussian(self.mu.repeat_interleave(k, 0), self.logvar.repeat_interleave(k, 0))

    def to_distribution(self) -> Independent:
        return Independent(Normal(self.mu, self.std), self.mu.dim() - 1)

    @classmethod
    def standard(cls, like: Tensor) -> "Gaussian":
        return cls(torch.zeros_like(like), torch.zeros_like(like))


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """Elementwise KL(N(mu_q, var_q) || N(mu_p, var_p)).

    Written out rather than via torch.distributions.kl_divergence because it stays in
    log-variance space (no sqrt then square); tests check it against the library.
    """
    return 0.5 * (logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) * torch.exp(-logvar_p) - 1.0)


def merge_gaussians(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> tuple[Tensor, Tensor]:
    """Precision-weighted combination of two Gaussians, elementwise, any shape.

    sigma^2 = 1 / (sigma_q^-2 + sigma_p^-2),  mu = sigma^2 (mu_q sigma_q^-2 + mu_p sigma_p^-2).
    Computed in log space: the weight of q is sigmoid(logvar_p - logvar_q), which is
    exact and never divides by a tiny precision sum.
    """
    logvar = -logaddexp(-logvar_q, -logvar_p)
    w_q = torch.sigmoid(logvar_p - logvar_q)
    mu = w_q * mu_q + (1.0 - w_q) * mu_p
    return mu, logvar


class GaussianHead(nn.Module):
    """Maps features to (mu, logvar) of a dense or spatial latent.

    dense -> dense:  Linear to 2*latent.
    dense -> conv:   Linear to 2*C*H*W, unflattened (a dense layer feeding a spatial latent).
    conv  -> conv:   3x3 conv to 2*C channels, same H, W (the latent keeps its spatial shape).
    """

    def __init__(self, in_shape: tuple[int, ...], latent_shape: tuple[int, ...], var_floor: float, batch_norm: bool = False):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.latent_shape = tuple(latent_shape)
        self.var_floor = var_floor
        # batch_norm: the paper code's heads, BN (with its scale and shift) before the identity / softplus.
        if len(in_shape) == 3:
            c = 2 * latent_shape[0]
            layers: list[nn.Module] = [nn.Conv2d(in_shape[0], c, 3, padding=1)] + ([nn.BatchNorm2d(c)] if batch_norm else [])
        else:
            n = 2 * math.prod(latent_shape)
            layers = [nn.Linear(in_shape[0], n), *([nn.BatchNorm1d(n)] if batch_norm else []),
                      nn.Unflatten(1, (2 * latent_shape[0], *latent_shape[1:]))]
        self.net: nn.Module = layers[0] if len(layers) == 1 else nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Gaussian:
        mu, raw = self.net(h).chunk(2, dim=1)
        var = softplus(raw) + self.var_floor
        return Gaussian(mu, torch.log(var))
