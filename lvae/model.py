"""Three latent-variable models on the same trunks, one inference scheme each.

Layers are indexed k = 0 (next to the data) .. L-1 (top). Every model shares the
generative top-down path (`HierarchicalModel`):

    z_{L-1} ~ N(0, I),   p(z_k | z_{k+1}) = prior_head_k(down_{k+1}(z_{k+1})),   p(x | z_0) = out_head(down_0(z_0))

and differs only in how it infers the latents:

- `LadderVAE` (Sønderby et al., 2016). A deterministic bottom-up pass
  d_k = up_k(d_{k-1}) (d_{-1} = x) gives q_hat(z_k | x) = enc_head_k(d_k); the top-down
  pass samples z_{L-1} ~ q_hat and, below it, merges q_hat with the prior into
  q(z_k | z_{k+1}, x) (precision-weighted) and samples that.
- `HierarchicalVAE`, the paper's baseline: the same stochastic layers inferred
  bottom-up, q(z_0 | x) then q(z_k | z_{k-1}), each up block reading the *sample* of
  the layer below; no merge.
- `TopLatentVAE`: only the top layer is stochastic; below it each latent is replaced
  by its prior mean, so the decoder is a deterministic function of z_{L-1}.

`down_k` mirrors `up_k`: a conv block's stride-2 stages become stride-2 transposed
convs, a dense block's widths are walked in reverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lvae.config import LayerSpec, ModelConfig
from lvae.latents import Gaussian, GaussianHead, merge_gaussians


def _act(slope: float) -> nn.Module:
    return nn.LeakyReLU(slope)


def _norm(kind: str, n: int, enabled: bool) -> list[nn.Module]:
    if not enabled:
        return []
    return [nn.BatchNorm2d(n) if kind == "conv" else nn.BatchNorm1d(n)]


def _up_block(spec: LayerSpec, in_shape: tuple[int, ...], bn: bool, slope: float) -> tuple[nn.Sequential, tuple[int, ...]]:
    """Bottom-up block: stride-2 convs (halving H, W each stage) or linear layers."""
    layers: list[nn.Module] = []
    if spec.kind == "conv":
        c, h, w = in_shape
        for ch in spec.channels:
            layers += [nn.Conv2d(c, ch, 3, stride=2, padding=1), *_norm("conv", ch, bn), _act(slope)]
            c, h, w = ch, h // 2, w // 2
        return nn.Sequential(*layers), (c, h, w)
    n = math.prod(in_shape)
    if len(in_shape) > 1:
        layers.append(nn.Flatten())
    for width in spec.channels:
        layers += [nn.Linear(n, width), *_norm("dense", width, bn), _act(slope)]
        n = width
    return nn.Sequential(*layers), (n,)


def _down_block(spec: LayerSpec, latent_shape: tuple[int, ...], bn: bool, slope: float) -> tuple[nn.Sequential, tuple[int, ...]]:
    """Top-down mirror of `_up_block`: from z_k back to the resolution of d_{k-1}."""
    widths = tuple(reversed(spec.channels))
    layers: list[nn.Module] = []
    if spec.kind == "conv":
        zc, h, w = latent_shape
        layers += [nn.Conv2d(zc, widths[0], 3, padding=1), *_norm("conv", widths[0], bn), _act(slope)]
        outs = widths[1:] + widths[-1:]
        for cin, cout in zip(widths, outs):
            layers += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), *_norm("conv", cout, bn), _act(slope)]
            h, w = 2 * h, 2 * w
        return nn.Sequential(*layers), (outs[-1], h, w)
    n = latent_shape[0]
    for width in widths:
        layers += [nn.Linear(n, width), *_norm("dense", width, bn), _act(slope)]
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


# ----------------------------------------------------------------------------- one pass


@dataclass
class LatentSample:
    """One stochastic layer of one pass: its posterior q, its prior p and the draw z ~ q.

    `q_hat` is the encoder's own Gaussian: the ladder's bottom-up q_hat(z_k | x) (which
    the merge turns into q); for the other models it is q itself. `closed_form_kl`
    says whether KL(q || p) may be taken analytically: not when p was computed from
    layers sampled *after* z (the hierarchical VAE's priors depend on z_{k+1}, which
    was drawn from q(z_{k+1} | z_k)); then the KL is estimated by log q(z) - log p(z).
    """

    layer: int
    q: Gaussian
    p: Gaussian
    z: Tensor
    q_hat: Gaussian
    closed_form_kl: bool = True


@dataclass
class ModelOutput:
    """Everything one pass produces: the likelihood's logits and each stochastic layer, bottom first."""

    x_logits: Tensor  # (B, C, H, W)
    latents: list[LatentSample]

    @property
    def x_mean(self) -> Tensor:
        return torch.sigmoid(self.x_logits)


# ----------------------------------------------------------------------------- the shared generative path


class HierarchicalModel(nn.Module):
    """Trunks and the generative path that every model shares; subclasses say how to infer.

    `stochastic[k]` says whether rung k has a latent. `up_inputs(k)` is what up_k reads:
    the features of the rung below (ladder, top-latent VAE) or its latent sample
    (hierarchical VAE).
    """

    reads_samples = False  # whether up_k reads z_{k-1} rather than d_{k-1}
    reads_means = False  # whether up_k reads the encoder mean mu_hat_{k-1} rather than d_{k-1}

    def __init__(self, config: ModelConfig, stochastic: list[bool]):
        super().__init__()
        self.config = config
        self.stochastic = list(stochastic)
        self.latent_shapes: list[tuple[int, ...]] = []
        shape: tuple[int, ...] = tuple(config.image_shape)
        up, enc = [], []
        for k, spec in enumerate(config.layers):
            block, features = _up_block(spec, shape, config.batch_norm, config.leaky_slope)
            latent_shape = (spec.latent, *features[1:]) if spec.kind == "conv" else (spec.latent,)
            up.append(block)
            enc.append(self.gaussian_head(features, latent_shape) if self.stochastic[k] else nn.Identity())
            self.latent_shapes.append(latent_shape)
            shape = latent_shape if self.reads_samples or self.reads_means else features
        self.up = nn.ModuleList(up)
        self.enc_heads = nn.ModuleList(enc)
        self.down, self.prior_heads, self.out_head = self.top_down_path()

    def gaussian_head(self, in_shape: tuple[int, ...], latent_shape: tuple[int, ...]) -> GaussianHead:
        return GaussianHead(in_shape, latent_shape, self.config.var_floor, self.config.head_batch_norm)

    def top_down_path(self) -> tuple[nn.ModuleList, nn.ModuleList, "OutputHead"]:
        """down_k for every rung, the heads of p(z_k | z_{k+1}) for k < L-1, and the output head."""
        config = self.config
        down, prior = [], []
        for k, spec in enumerate(config.layers):
            block, out_shape = _down_block(spec, self.latent_shapes[k], config.batch_norm, config.leaky_slope)
            down.append(block)
            if k > 0:
                prior.append(self.gaussian_head(out_shape, self.latent_shapes[k - 1]))
            else:
                out_head = OutputHead(out_shape, config.image_shape)
        return nn.ModuleList(down), nn.ModuleList(prior), out_head

    @property
    def depth(self) -> int:
        return self.config.depth

    @property
    def latent_layers(self) -> list[int]:
        """The rungs that hold a latent, bottom first: what `ModelOutput.latents` lists."""
        return [k for k, stochastic in enumerate(self.stochastic) if stochastic]

    def prior(self, k: int, z_above: Tensor) -> Gaussian:
        """p(z_k | z_{k+1}) for k < L-1."""
        return self.prior_heads[k](self.down[k + 1](z_above))

    def decode(self, z0: Tensor) -> Tensor:
        """Logits of p(x | z_0): (B, C, H, W)."""
        return self.out_head(self.down[0](z0))

    def forward(self, x: Tensor, repeats: int = 1) -> ModelOutput:
        """One pass of inference and decoding; each image's noise drawn `repeats` times
        (rows repeat_interleave'd: (B * repeats, ...)), the deterministic part computed once."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, n: int, temperature: float = 1.0, device: torch.device | str | None = None) -> Tensor:
        """Sample images (the likelihood's mean) from the prior: N(0, T^2 I) at the top."""
        device = device or next(self.parameters()).device
        z = temperature * torch.randn(n, *self.latent_shapes[-1], device=device)
        return self.sample_below(z, self.depth - 1, temperature)

    @torch.no_grad()
    def sample_below(self, z: Tensor, layer: int, temperature: float = 1.0) -> Tensor:
        """Images (the likelihood's mean) from a given z_layer, every layer below it drawn from
        its prior p(z_k | z_{k+1}) (a deterministic rung passes its prior mean on): what each
        layer leaves to the layers below it."""
        for k in range(layer - 1, -1, -1):
            p = self.prior(k, z)
            z = p.sample(temperature) if self.stochastic[k] else p.mu
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self(x).x_mean


# ----------------------------------------------------------------------------- the three inference schemes


class LadderVAE(HierarchicalModel):
    """The ladder: a deterministic bottom-up pass, then a top-down pass that merges.

    `config.ladder_up == "mean"`: up_k reads mu_hat_{k-1} (the paper code's `only_mu_up`).
    `config.ladder_inference == "separate"`: q_hat is merged with a top-down Gaussian of the
    inference network's own (`inf_down`, `inf_heads`: the paper code's default), not with the
    prior; the KL is still taken against the prior p(z_k | z_{k+1}).
    `config.ladder_merge` replaces the precision-weighted merge by a learned one ("concat") or drops the
    top-down information from q altogether ("bottom-up"): the factor study's two merge arms.
    """

    def __init__(self, config: ModelConfig):
        self.reads_means = config.ladder_up == "mean"
        super().__init__(config, [True] * config.depth)
        merge = config.ladder_merge
        if config.ladder_inference == "separate" and merge != "bottom-up":
            inf_down, inf_heads, _ = self.top_down_path()
            self.inf_down = nn.ModuleList(list(inf_down)[1:])  # inf_down[k] reads z_{k+1}
            if merge == "precision":
                self.inf_heads = inf_heads
        if merge == "concat":  # q(z_k | .) from [d_k, t_k]: the bottom-up and top-down features side by side
            self.merge_heads = nn.ModuleList(
                self.gaussian_head((self.feature_size(k) + self.top_down_size(k),), self.latent_shapes[k])
                for k in range(config.depth - 1))

    def feature_size(self, k: int) -> int:
        """Units of d_k, the bottom-up features that enc_head_k reads."""
        return math.prod(self.enc_heads[k].in_shape)

    def top_down_size(self, k: int) -> int:
        """Units of t_k, the top-down features that the head of p(z_k | z_{k+1}) reads."""
        return math.prod(self.prior_heads[k].in_shape)

    def bottom_up(self, x: Tensor, features: list[Tensor] | None = None) -> list[Gaussian]:
        """Deterministic pass: every encoder q_hat(z_k | x) = N(mu_hat, var_hat), bottom first. No sampling.
        `features`, if given, collects each d_k (what the "concat" merge reads)."""
        h, out = x, []
        for block, head in zip(self.up, self.enc_heads):
            h = block(h)
            if features is not None:
                features.append(h)
            out.append(head(h))
            if self.reads_means:
                h = out[-1].mu
        return out

    def merge_partner(self, k: int, z_above: Tensor, prior: Gaussian) -> Gaussian:
        """The top-down Gaussian that q_hat(z_k | x) is merged with: the prior, or the inference path's own."""
        if self.config.ladder_inference == "separate":
            return self.inf_heads[k](self.inf_down[k](z_above))
        return prior

    def posterior(self, k: int, z_above: Tensor, prior: Gaussian, q_hat: Gaussian, features: Tensor | None) -> Gaussian:
        """q(z_k | z_{k+1}, x), as `config.ladder_merge` forms it."""
        merge = self.config.ladder_merge
        if merge == "bottom-up":
            return q_hat
        if merge == "concat":
            down = self.inf_down[k] if self.config.ladder_inference == "separate" else self.down[k + 1]
            return self.merge_heads[k](torch.cat([features.flatten(1), down(z_above).flatten(1)], 1))
        t = self.merge_partner(k, z_above, prior)
        return Gaussian(*merge_gaussians(q_hat.mu, q_hat.logvar, t.mu, t.logvar))

    def top_down(self, encoder: list[Gaussian], temperature: float = 1.0, features: list[Tensor] | None = None) -> ModelOutput:
        """Stochastic pass: sample the top from q_hat, then merge with the prior and sample, downwards.
        `features` (the bottom-up d_k) are needed by the "concat" merge only."""
        top = encoder[-1]
        z = top.sample(temperature)
        latents = [LatentSample(self.depth - 1, top, Gaussian.standard(top.mu), z, top)]
        for k in range(self.depth - 2, -1, -1):
            p, q_hat = self.prior(k, z), encoder[k]
            q = self.posterior(k, z, p, q_hat, features[k] if features is not None else None)
            z = q.sample(temperature)
            latents.insert(0, LatentSample(k, q, p, z, q_hat))
        return ModelOutput(self.decode(z), latents)

    def forward(self, x: Tensor, repeats: int = 1) -> ModelOutput:
        features: list[Tensor] | None = [] if self.config.ladder_merge == "concat" else None
        encoder = self.bottom_up(x, features)
        if repeats > 1:
            encoder = [g.expand(repeats) for g in encoder]
            features = [f.repeat_interleave(repeats, 0) for f in features] if features is not None else None
        return self.top_down(encoder, features=features)


class HierarchicalVAE(HierarchicalModel):
    """The paper's VAE: q(z_0 | x) prod_k q(z_k | z_{k-1}), sampled bottom-up; no merge."""

    reads_samples = True

    def __init__(self, config: ModelConfig):
        super().__init__(config, [True] * config.depth)

    def forward(self, x: Tensor, repeats: int = 1) -> ModelOutput:
        q = self.enc_heads[0](self.up[0](x))
        q = q.expand(repeats) if repeats > 1 else q
        posteriors, samples = [q], [q.sample()]
        for k in range(1, self.depth):
            q = self.enc_heads[k](self.up[k](samples[-1]))
            posteriors.append(q)
            samples.append(q.sample())
        top = self.depth - 1
        latents = [LatentSample(top, posteriors[top], Gaussian.standard(samples[top]), samples[top], posteriors[top])]
        for k in range(top - 1, -1, -1):
            p = self.prior(k, samples[k + 1])
            latents.insert(0, LatentSample(k, posteriors[k], p, samples[k], posteriors[k], closed_form_kl=False))
        return ModelOutput(self.decode(samples[0]), latents)


class TopLatentVAE(HierarchicalModel):
    """A VAE with one latent, the top rung's; the lower rungs are deterministic.

    The encoder is the ladder's bottom-up trunk up to the top head; the decoder is the
    top-down path with each lower latent replaced by its prior mean. It has the same
    trunks as the ladder but far fewer stochastic units (16 of 408 in `seed`, 4 of 124 in
    `paper`): a baseline for the seed's claims, not for the paper's (use HierarchicalVAE).
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config, [False] * (config.depth - 1) + [True])

    def forward(self, x: Tensor, repeats: int = 1) -> ModelOutput:
        h = x
        for block in self.up:
            h = block(h)
        q = self.enc_heads[-1](h)
        q = q.expand(repeats) if repeats > 1 else q
        z = q.sample()
        top = LatentSample(self.depth - 1, q, Gaussian.standard(z), z, q)
        for k in range(self.depth - 2, -1, -1):
            z = self.prior(k, z).mu
        return ModelOutput(self.decode(z), [top])


MODELS: dict[str, type[HierarchicalModel]] = {"lvae": LadderVAE, "hvae": HierarchicalVAE, "top-vae": TopLatentVAE}


def build_model(kind: str, config: ModelConfig) -> HierarchicalModel:
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(MODELS)}")
    return MODELS[kind](config)


def use_fast_layout(model: HierarchicalModel, device: torch.device) -> HierarchicalModel:
    """Conv weights in channels-last order on a CPU, where oneDNN's convolutions (and their
    backward, half of a `seed` step) run faster that way: `make bench` measures the step
    before and after. Dense models and other devices are left as they are. Same numbers up to
    float rounding; a checkpoint loads into either layout."""
    if device.type == "cpu" and any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    return model
