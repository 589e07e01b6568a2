"""The Ladder VAE (Sønderby et al., 2016) and a vanilla VAE built from the same trunks.

Layers are indexed k = 0 (next to the data) .. L-1 (top). With d_{-1} = x:

    bottom-up (deterministic):   d_k = up_k(d_{k-1}),    q_hat(z_k | x) = N(mu_hat_k, var_hat_k) = enc_head_k(d_k)
    top-down (stochastic):       z_{L-1} ~ q_hat(z_{L-1} | x)
                                 p(z_k | z_{k+1}) = prior_head_k(down_{k+1}(z_{k+1}))
                                 q(z_k | .) = merge(q_hat_k, p_k)  (precision-weighted),   z_k ~ q(z_k | .)
    likelihood:                  p(x | z_0) = out_head(down_0(z_0))

`down_k` mirrors `up_k`: a conv block's stride-2 stages become stride-2 transposed convs,
a dense block's widths are walked in reverse. Generation runs the top-down pass from
N(0, I) with the priors alone; the encoder is never called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lvae.config import LayerSpec, ModelConfig
from lvae.latents import Gaussian, GaussianHead, merge_gaussians


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1)


def _norm(kind: str, n: int, enabled: bool) -> list[nn.Module]:
    if not enabled:
        return []
    return [nn.BatchNorm2d(n) if kind == "conv" else nn.BatchNorm1d(n)]


def _up_block(spec: LayerSpec, in_shape: tuple[int, ...], bn: bool) -> tuple[nn.Sequential, tuple[int, ...]]:
    """Bottom-up block: stride-2 convs (halving H, W each stage) or linear layers."""
    layers: list[nn.Module] = []
    if spec.kind == "conv":
        c, h, w = in_shape
        for ch in spec.channels:
            layers += [nn.Conv2d(c, ch, 3, stride=2, padding=1), *_norm("conv", ch, bn), _act()]
            c, h, w = ch, h // 2, w // 2
        return nn.Sequential(*layers), (c, h, w)
    n = math.prod(in_shape)
    if len(in_shape) > 1:
        layers.append(nn.Flatten())
    for width in spec.channels:
        layers += [nn.Linear(n, width), *_norm("dense", width, bn), _act()]
        n = width
    return nn.Sequential(*layers), (n,)


def _down_block(spec: LayerSpec, latent_shape: tuple[int, ...], bn: bool) -> tuple[nn.Sequential, tuple[int, ...]]:
    """Top-down mirror of `_up_block`: from z_k back to the resolution of d_{k-1}."""
    widths = tuple(reversed(spec.channels))
    layers: list[nn.Module] = []
    if spec.kind == "conv":
        zc, h, w = latent_shape
        layers += [nn.Conv2d(zc, widths[0], 3, padding=1), *_norm("conv", widths[0], bn), _act()]
        outs = widths[1:] + widths[-1:]
        for cin, cout in zip(widths, outs):
            layers += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), *_norm("conv", cout, bn), _act()]
            h, w = 2 * h, 2 * w
        return nn.Sequential(*layers), (outs[-1], h, w)
    n = latent_shape[0]
    for width in widths:
        layers += [nn.Linear(n, width), *_norm("dense", width, bn), _act()]
        n = width
    return nn.Sequential(*layers), (n,)


class OutputHead(nn.Module):
    """Features at the data's resolution -> per-pixel logits of p(x | z_0)."""

    def __init__(self, in_shape: tuple[int, ...], image_shape: tuple[int, int, int]):
        super().__init__()
        if len(in_shape) == 3:
            self.net: nn.Module = nn.Conv2d(in_shape[0], image_shape[0], 3, padding=1)
        else:
            self.net = nn.Sequential(nn.Linear(in_shape[0], math.prod(image_shape)), nn.Unflatten(1, image_shape))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


@dataclass
class LadderOutput:
    """Everything one pass produces; lists are indexed by layer, bottom (k = 0) first.

    `posteriors[k]` is q(z_k | .) (merged below the top), `priors[k]` is p(z_k | z_{k+1})
    (N(0, I) at the top), `encoder[k]` is the bottom-up q_hat(z_k | x). A vanilla VAE's
    deterministic layers hold None in `posteriors` and `encoder`.
    """

    x_logits: Tensor  # (B, C, H, W)
    posteriors: list[Gaussian | None]
    priors: list[Gaussian]
    encoder: list[Gaussian | None]
    samples: list[Tensor]

    @property
    def x_mean(self) -> Tensor:
        return torch.sigmoid(self.x_logits)


class LadderVAE(nn.Module):
    """A ladder of L >= 1 stochastic layers, conv (spatial) or dense, from a ModelConfig."""

    def __init__(self, config: ModelConfig, stochastic: list[bool] | None = None):
        super().__init__()
        self.config = config
        L = config.depth
        self.stochastic = stochastic if stochastic is not None else [True] * L
        shape: tuple[int, ...] = tuple(config.image_shape)
        feature_shapes = [shape]  # d_{-1} = x, d_0, ..., d_{L-1}
        self.latent_shapes: list[tuple[int, ...]] = []
        up, enc = [], []
        for k, spec in enumerate(config.layers):
            block, shape = _up_block(spec, shape, config.batch_norm)
            latent_shape = (spec.latent, *shape[1:]) if spec.kind == "conv" else (spec.latent,)
            up.append(block)
            enc.append(GaussianHead(shape, latent_shape, config.var_floor) if self.stochastic[k] else nn.Identity())
            feature_shapes.append(shape)
            self.latent_shapes.append(latent_shape)
        self.up = nn.ModuleList(up)
        self.enc_heads = nn.ModuleList(enc)

        down, prior = [], []
        for k, spec in enumerate(config.layers):
            block, out_shape = _down_block(spec, self.latent_shapes[k], config.batch_norm)
            down.append(block)
            if k > 0:
                prior.append(GaussianHead(out_shape, self.latent_shapes[k - 1], config.var_floor))
            else:
                self.out_head = OutputHead(out_shape, config.image_shape)
        self.down = nn.ModuleList(down)
        self.prior_heads = nn.ModuleList(prior)

    @property
    def depth(self) -> int:
        return self.config.depth

    # ------------------------------------------------------------------ passes

    def bottom_up(self, x: Tensor) -> list[Gaussian | None]:
        """Deterministic pass: every encoder (mu, logvar), bottom first. No sampling."""
        h, out = x, []
        for k, block in enumerate(self.up):
            h = block(h)
            out.append(self.enc_heads[k](h) if self.stochastic[k] else None)
        return out

    def prior(self, k: int, z_above: Tensor) -> Gaussian:
        """p(z_k | z_{k+1}) for k < L-1."""
        return self.prior_heads[k](self.down[k + 1](z_above))

    def decode(self, z0: Tensor) -> Tensor:
        """Logits of p(x | z_0): (B, C, H, W)."""
        return self.out_head(self.down[0](z0))

    def top_down(self, encoder: list[Gaussian | None], temperature: float = 1.0) -> LadderOutput:
        """Stochastic pass: sample the top from q_hat, then merge and sample downwards."""
        L = self.depth
        top = encoder[-1]
        assert top is not None
        posteriors: list[Gaussian | None] = [None] * L
        priors: list[Gaussian] = [None] * L  # type: ignore[list-item]
        samples: list[Tensor] = [None] * L  # type: ignore[list-item]
        posteriors[-1], priors[-1] = top, Gaussian.standard(top.mu)
        z = samples[-1] = top.sample(temperature)
        for k in range(L - 2, -1, -1):
            p = priors[k] = self.prior(k, z)
            q_hat = encoder[k]
            if q_hat is None:  # deterministic layer (vanilla VAE): pass the prior mean on
                z = p.mu
            else:
                q = posteriors[k] = Gaussian(*merge_gaussians(q_hat.mu, q_hat.logvar, p.mu, p.logvar))
                z = q.sample(temperature)
            samples[k] = z
        return LadderOutput(self.decode(z), posteriors, priors, encoder, samples)

    def forward(self, x: Tensor) -> LadderOutput:
        return self.top_down(self.bottom_up(x))

    @torch.no_grad()
    def generate(self, n: int, temperature: float = 1.0, device: torch.device | str | None = None) -> Tensor:
        """Sample images (the likelihood's mean) from the prior: N(0, T^2 I) at the top."""
        device = device or next(self.parameters()).device
        z = temperature * torch.randn(n, *self.latent_shapes[-1], device=device)
        for k in range(self.depth - 2, -1, -1):
            p = self.prior(k, z)
            z = p.sample(temperature) if self.stochastic[k] else p.mu
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self(x).x_mean


class VanillaVAE(LadderVAE):
    """The same trunks with one latent at the top; lower layers are deterministic.

    The decoder is the ladder's top-down path with each lower latent replaced by its
    prior mean, so LVAE and VAE differ only in where noise enters.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config, stochastic=[False] * (config.depth - 1) + [True])


def build_model(kind: str, config: ModelConfig) -> LadderVAE:
    if kind == "lvae":
        return LadderVAE(config)
    if kind == "vae":
        return VanillaVAE(config)
    raise ValueError(f"unknown model kind {kind!r}; choose 'lvae' or 'vae'")
