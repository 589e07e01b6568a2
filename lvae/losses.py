"""The objective: reconstruction log-likelihood, KL per layer in two modes, free bits, and the bound they form.

KL modes
- "paper" (default): KL(q(z_k | .) || p(z_k | z_{k+1})) below the top and
  KL(q(z_L | x) || N(0, I)) at the top. recon - sum(KL) is the ladder's ELBO, a true
  lower bound on log p(x) (Sønderby et al., eq. 14). Use it for anything reported as
  a likelihood.
- "seed": the original author's variant, for the ladder only. Below the top, the merged
  Gaussian is pulled towards the encoder's own Gaussian, KL(q(z_k | .) || q_hat(z_k | x));
  the decoder's prior gets no KL gradient. This is *not* a bound on log p(x).

Bounds (`ObjectiveConfig.bound`)
- "elbo": recon + beta * sum(KL), above.
- "iw": the importance-weighted bound L_K of Burda et al. (2016) on K draws per image,
  L_K = log (1/K) sum_k exp(a_k) with the log-weights a_k of `log_weights`; L_1 is the
  ELBO (with the one-sample KL estimate), and L_K rises towards log p(x) with K.

`split_elbo` averages the ELBO's terms over a whole split (training's test pass, `lvae.evaluation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lvae.config import ObjectiveConfig
from lvae.elementwise import log_sigmoid
from lvae.latents import LOG_2PI, gaussian_kl
from lvae.model import HierarchicalModel, LatentSample, ModelOutput


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """log Bernoulli(x; sigmoid(logits)) elementwise, for x in [0, 1]: x l + log sigmoid(-l)."""
    return x * logits + log_sigmoid(-logits)


def _bernoulli_summed_without_grad(logits: Tensor, x: Tensor) -> Tensor:
    """`bernoulli_log_prob` summed over pixels, as x l - max(l, 0) - log(1 + e^-|l|), mostly in place.

    Why: the importance-weighted bound scores a million logits per pass; this takes 10 passes
    over them and 3 buffers where the composed ops take about 15 and a buffer each. The plain
    log(1 + u), u = e^-|l| in (0, 1], is off by less than 1.2e-7 nats per pixel: a summed
    log-likelihood needs absolute accuracy, and that is below the float32 rounding of its sum
    (tests/test_losses.py checks it against float64).
    """
    lp = x * logits
    lp.sub_(logits.clamp(min=0))
    lp.sub_(logits.abs().neg_().exp_().add_(1.0).log_())
    return lp.flatten(-3).sum(-1)


def log_likelihood(x_logits: Tensor, x: Tensor, likelihood: str, output_variance: float = 0.5) -> Tensor:
    """log p(x | z_0) summed over each image's pixels (the last three dimensions): (B, C, H, W) -> (B,).

    `x` broadcasts against the logits: (B, 1, C, H, W) images against (B, R, C, H, W) logits
    give (B, R) without copying each image R times (the importance-weighted bound's passes).

    bernoulli: x in {0, 1} (or [0, 1]), logits parameterise the pixel probabilities.
    gaussian:  mean sigmoid(logits), fixed variance; with variance 1/2 this equals
               -(summed squared error) - D/2 log(pi), the seed's MSE.
    """
    if likelihood == "bernoulli":
        if x_logits.requires_grad or x.requires_grad:
            return bernoulli_log_prob(x_logits, x).flatten(-3).sum(-1)
        return _bernoulli_summed_without_grad(x_logits, x)
    if likelihood == "gaussian":
        sq = (x - torch.sigmoid(x_logits)) ** 2
        lp = -0.5 * (LOG_2PI + math.log(output_variance)) - sq / (2 * output_variance)
        return lp.flatten(-3).sum(-1)
    raise ValueError(f"unknown likelihood {likelihood!r}")


def kl_per_unit(layer: LatentSample, mode: str = "paper") -> Tensor:
    """KL of one stochastic layer, unit by unit: (B, *latent_shape).

    paper: KL(q || p), in closed form where the layer allows it, else the one-sample
    estimate log q(z) - log p(z) (unbiased: see `LatentSample.closed_form_kl`).
    seed:  KL(q || q_hat), the merged posterior against the encoder's own Gaussian
           (below the top; `kl_per_layer` takes the top against N(0, I) in both modes).
    """
    if mode == "seed":
        return gaussian_kl(layer.q.mu, layer.q.logvar, layer.q_hat.mu, layer.q_hat.logvar)
    if mode != "paper":
        raise ValueError(f"unknown kl_mode {mode!r}; choose 'paper' or 'seed'")
    if layer.closed_form_kl:
        return gaussian_kl(layer.q.mu, layer.q.logvar, layer.p.mu, layer.p.logvar)
    return layer.q.log_density(layer.z) - layer.p.log_density(layer.z)


def kl_per_layer(out: ModelOutput, mode: str = "paper") -> list[Tensor]:
    """KL of each stochastic layer (`out.latents`, bottom first), each (B,)."""
    top = out.latents[-1]
    return [kl_per_unit(layer, "paper" if layer is top else mode).flatten(1).sum(1) for layer in out.latents]


def log_weight_terms(out: ModelOutput, x: Tensor, likelihood: str, output_variance: float = 0.5) -> tuple[Tensor, Tensor]:
    """(log p(x | z), sum_k log p(z_k) - log q(z_k | .)) for each draw of one pass: each (B, R), for R draws
    per image of x (B, ...) (`model(x, repeats=R)`, rows repeat_interleave'd)."""
    b = len(x)
    repeats = len(out.x_logits) // b
    logits = out.x_logits.reshape(b, repeats, *x.shape[1:])
    log_px = log_likelihood(logits, x.unsqueeze(1), likelihood, output_variance)  # (B, R): each image scored once per draw, not copied
    log_ratio = sum(layer.p.log_prob(layer.z) - layer.q.log_prob(layer.z) for layer in out.latents)  # (B * R,)
    return log_px, log_ratio.view(b, repeats)


def log_weights(out: ModelOutput, x: Tensor, likelihood: str, output_variance: float = 0.5, beta: float = 1.0) -> Tensor:
    """a = log p(x | z) + beta (log p(z) - log q(z | x)) per draw: (B, R).

    beta = 1: the importance log-weight log p(x, z) - log q(z | x), what evaluation scores. beta < 1:
    the KL warm-up inside each weight, as the paper's code anneals its IW objective
    (casperkaae/LVAE); the result is then no bound on log p(x), like the warm-up ELBO.
    """
    log_px, log_ratio = log_weight_terms(out, x, likelihood, output_variance)
    return log_px + beta * log_ratio


@dataclass
class LossTerms:
    """Batch means of each term of one step; `loss` is what the optimiser minimises."""

    loss: Tensor
    recon: Tensor  # -log p(x | z), nats per image
    kl: list[Tensor]  # per layer, bottom first, nats per image
    elbo: Tensor  # recon + sum(kl) with beta = 1 and no free bits, negated

    def as_floats(self) -> dict[str, float | list[float]]:
        return {
            "loss": self.loss.item(),
            "recon": self.recon.item(),
            "kl": [k.item() for k in self.kl],
            "elbo": self.elbo.item(),
        }


def compute_loss(
    out: ModelOutput,
    x: Tensor,
    likelihood: str,
    beta: float,
    kl_mode: str = "paper",
    free_bits: float = 0.0,
    output_variance: float = 0.5,
) -> LossTerms:
    """recon + beta * sum_k max(KL_k, free_bits), the KL_k averaged over the batch."""
    recon = -log_likelihood(out.x_logits, x, likelihood, output_variance).mean()
    kl = [k.mean() for k in kl_per_layer(out, kl_mode)]
    penalised = sum(torch.clamp(k, min=free_bits) for k in kl) if free_bits > 0 else sum(kl)
    loss = recon + beta * penalised
    elbo = -(recon + sum(kl))
    return LossTerms(loss=loss, recon=recon, kl=kl, elbo=elbo.detach())


def iw_loss(out: ModelOutput, x: Tensor, likelihood: str, beta: float = 1.0, output_variance: float = 0.5) -> LossTerms:
    """-L_K averaged over images, on the K draws per image in `out` (`model(x, repeats=K)`).

    The logged recon, KL (closed form where the layer allows it) and elbo are the ELBO's terms
    averaged over all B * K draws: the numbers the ELBO objective logs, with K times the samples.
    """
    log_px, log_ratio = log_weight_terms(out, x, likelihood, output_variance)
    a = log_px + beta * log_ratio  # (B, K), as `log_weights`
    bound = torch.logsumexp(a, 1) - math.log(a.shape[1])
    recon = -log_px.mean()
    kl = [k.mean() for k in kl_per_layer(out, "paper")]
    return LossTerms(loss=-bound.mean(), recon=recon, kl=kl, elbo=-(recon + sum(kl)).detach())


def objective_loss(out: ModelOutput, x: Tensor, likelihood: str, beta: float, objective: ObjectiveConfig,
                   output_variance: float = 0.5) -> LossTerms:
    """The loss `objective` asks for, on a pass with `objective.draws` draws per image."""
    if objective.bound == "iw":
        return iw_loss(out, x, likelihood, beta, output_variance)
    return compute_loss(out, x, likelihood, beta, objective.kl_mode, objective.free_bits, output_variance)


@torch.no_grad()
def split_elbo(model: HierarchicalModel, x_all: Tensor, likelihood: str, output_variance: float = 0.5,
               batch_size: int = 1000) -> dict[str, Any]:
    """ELBO terms (paper KL, beta = 1) averaged over a whole split, in nats per image.

    `kl` is per stochastic layer (bottom first); `kl_units` the same KL unit by unit
    (flattened), which shows where units switch off.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    recon, units, n = 0.0, None, 0
    for i in range(0, len(x_all), batch_size):
        x = x_all[i : i + batch_size].to(device)
        out = model(x)
        recon += -log_likelihood(out.x_logits, x, likelihood, output_variance).sum().item()
        per_unit = [kl_per_unit(layer).flatten(1).sum(0).double().cpu() for layer in out.latents]
        units = per_unit if units is None else [a + b for a, b in zip(units, per_unit)]
        n += len(x)
    model.train(was_training)
    kl_units = [(u / n).tolist() for u in units]
    kl = [sum(u) for u in kl_units]
    return {"elbo": -(recon / n + sum(kl)), "recon": recon / n, "kl": kl, "kl_units": kl_units}
