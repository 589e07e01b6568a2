"""Every number a run is judged by: ELBO, importance-weighted NLL, KL and active units
per layer (bottom first, as everywhere in the package), and the quality of prior samples.

Importance-weighted bound (Burda et al., 2016). With the ladder's proposal
q(z|x) = q(z_{L-1}|x) prod_k q(z_k|z_{k+1}, x) and w = p(x, z) / q(z|x),

    log p(x) >= L_K = E[ log (1/K) sum_k w_k ],   L_1 = ELBO <= L_K <= log p(x),  L_K -> log p(x).

For every model the proposal is the model's own posterior (`model(x, repeats=n)`): the
ladder's bottom-up pass is deterministic and runs once per image, its top-down pass is
repeated; passes hold at most `chunk` rows, so memory stays bounded for K = 5000.
Log-weights are summed in float32 per sample and combined by log-sum-exp in float64. The scored
model is a copy with batch norm folded into the layer before it (lvae.fusion), and glibc keeps
freed memory (lvae.allocator): the same numbers to float32 rounding, measured in `make bench`.
Every per-image output goes into a buffer allocated before the loop, and a long score hands its
freed memory back every `TRIM_SECONDS`: nothing small outlives a pass to pin the heap between
the passes' large activations, so the heap stays flat over 10,000 images (issue 32).
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lvae.allocator import keep_freed_memory, return_freed_memory
from lvae.classifier import class_histogram, features, kl_to_uniform, load_classifier, predict
from lvae.data import evaluation_inputs, load_split
from lvae.fid import frechet_distance
from lvae.fusion import folded_for_inference
from lvae.losses import log_weights, split_elbo
from lvae.model import HierarchicalModel
from lvae.progress import progress_bar
from lvae.weights import load_trained

ACTIVE_THRESHOLD = 0.01
CHUNK_FLOATS = 2**22  # largest activation of one top-down pass: 16 MB in float32 (below lvae.allocator's 32 MB mmap threshold)
TRIM_SECONDS = 10.0  # a long score hands freed memory back this often (lvae.allocator.return_freed_memory)


# ----------------------------------------------------------------------------- importance weighting


def activation_budget(device: torch.device, free_bytes: int | None = None) -> int:
    """Bytes the largest activation of one IW pass may take on `device`.

    CPU: 16 MB, so no activation reaches the 32 MB above which glibc maps (and page-faults in)
    fresh memory for every buffer (lvae.allocator). Measured on 2 idle EPYC cores, one IW pass of
    4 images x K = 1000: the `paper` MLP at 4011 rows against 1337 (the former 4 MB) runs at
    59 % of the 2-thread peak against 55 % (65 against 62 % on one thread); the `seed` conv
    model at 332 rows against 83, 1.1x faster. A GPU wants the opposite, passes as
    wide as its memory allows: a sixty-fourth of the free memory, since a pass holds a few
    dozen activations (no graph: the bound is computed without gradients).
    """
    if device.type != "cuda":
        return CHUNK_FLOATS * 4
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    return max(CHUNK_FLOATS * 4, free_bytes // 64)


@torch.no_grad()
def auto_chunk(model: HierarchicalModel, x: Tensor, budget_bytes: int | None = None) -> int:
    """Rows per pass so that its largest activation stays within `activation_budget`."""
    largest = 0

    def hook(module, inputs, output):
        nonlocal largest
        if isinstance(output, Tensor):
            largest = max(largest, output[0].numel() * output.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model(x[:1])
    finally:
        for h in handles:
            h.remove()
    budget = budget_bytes if budget_bytes is not None else activation_budget(x.device)
    return max(16, budget // max(1, largest))


@torch.no_grad()
def importance_log_weights(model: HierarchicalModel, x: Tensor, k: int, likelihood: str, output_variance: float = 0.5,
                           chunk: int | None = None) -> Tensor:
    """K log-weights per image: (B, K) float64, in passes of about `chunk` rows.

    Each pass runs the model's deterministic part once per image and draws its noise
    several times (`model(x, repeats=n)`), whatever the inference scheme.
    """
    keep_freed_memory()
    chunk = chunk or auto_chunk(model, x)
    b = len(x)
    per_pass = max(1, chunk // b)  # samples per image in one pass
    out = torch.empty(b, k, dtype=torch.float64, device=x.device)  # (B, K), filled pass by pass: no list of columns kept
    for start in range(0, k, per_pass):
        n = min(per_pass, k - start)
        out[:, start : start + n] = log_weights(model(x, repeats=n), x, likelihood, output_variance)  # (B, n)
    return out


@dataclass
class IWEstimate:
    """-log p(x) estimated with K importance samples, averaged over images."""

    nll: float  # mean over images of -log (1/K) sum_k w_k
    stderr: float  # standard error of that mean over images
    iw_samples: int
    elbo_mc: float  # mean log-weight: a Monte Carlo ELBO from the same samples
    per_image: Tensor  # (N,) float64, each image's log p(x) estimate
    per_image_elbo: Tensor  # (N,) each image's mean log-weight: its ELBO, estimated from the same K samples
    chunk: int  # rows per pass: which draws land on which image, so a rerun with the same seed and chunk repeats them


@torch.no_grad()
def iw_log_likelihood(model: HierarchicalModel, x_all: Tensor, k: int, likelihood: str, output_variance: float = 0.5,
                      chunk: int | None = None, progress: bool = False, compile: bool = False) -> IWEstimate:
    """The importance-weighted estimate of log p(x) over a whole split, in nats per image. `compile`: the passes run
    through torch.compile (lvae.compiling; eager, said in one line, where no C++ compiler works)."""
    if k < 1:
        raise ValueError(f"the number of importance samples must be >= 1, got {k}")
    model = folded_for_inference(model)  # an eval-mode copy, batch norm folded into the layers before it
    device = next(model.parameters()).device
    chunk = chunk or auto_chunk(model, x_all[:1].to(device))
    if compile:  # after sizing the chunk on the plain model
        from lvae.compiling import compiled

        model = compiled(model, "the importance-weighted evaluation")
    images_per_batch = max(1, min(len(x_all), chunk // k)) if k < chunk else 1
    n = len(x_all)
    per_image = torch.empty(n, dtype=torch.float64)  # (N,): filled in place, so no per-image tensor is kept
    per_image_elbo = torch.empty(n, dtype=torch.float64)
    trimmed = time.perf_counter()
    with progress_bar(total=n, enabled=progress, desc=f"IW bound (K={k})", unit="img") as bar:
        for i in range(0, n, images_per_batch):
            x = x_all[i : i + images_per_batch].to(device)
            lw = importance_log_weights(model, x, k, likelihood, output_variance, chunk)  # (B, K)
            per_image[i : i + len(x)] = torch.logsumexp(lw, 1) - math.log(k)
            per_image_elbo[i : i + len(x)] = lw.mean(1)
            del lw, x
            if time.perf_counter() - trimmed > TRIM_SECONDS:
                return_freed_memory()
                trimmed = time.perf_counter()
            bar.update(min(images_per_batch, n - i))
    return_freed_memory()
    stderr = per_image.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return IWEstimate(-per_image.mean().item(), stderr, k, per_image_elbo.mean().item(), per_image, per_image_elbo, chunk)


# ----------------------------------------------------------------------------- per-layer statistics


@torch.no_grad()
def posterior_mean_pairs(model: HierarchicalModel, x: Tensor, samples: int = 10) -> list[tuple[Tensor, Tensor]]:
    """Two independent estimates of E_q[z_k | x] per stochastic layer: ((B, D_k), (B, D_k)) each.

    Below the ladder's top (and everywhere in the hierarchical VAE) q(z_k | .) depends on
    sampled layers, so E_q[z_k | x] is a Monte Carlo mean of the posterior means over
    `samples` passes (Rao-Blackwellised: q's mean, not a draw), split into two halves.
    """
    if samples < 2:
        raise ValueError(f"active units need at least 2 samples per image (two independent means), got {samples}")
    half = samples // 2
    out = model(x, repeats=2 * half)
    pairs = []
    for layer in out.latents:
        mu = layer.q.mu.flatten(1).view(len(x), 2 * half, -1)  # (B, 2*half, D)
        pairs.append((mu[:, :half].mean(1), mu[:, half:].mean(1)))
    return pairs


def unbiased_activity(m1: Tensor, m2: Tensor) -> Tensor:
    """Cov_x(m1, m2) per unit, with N - 1 in the denominator: (D,).

    m1 and m2 are independent, unbiased estimates of the same mean mu(x), so their
    covariance over x is Var_x(mu(x)) exactly in expectation; the variance of one noisy
    estimate would add its Monte Carlo noise and read inactive units as active.
    """
    n = len(m1)
    return ((m1 - m1.mean(0)) * (m2 - m2.mean(0))).sum(0) / max(1, n - 1)


@torch.no_grad()
def active_units(model: HierarchicalModel, x_all: Tensor, threshold: float = ACTIVE_THRESHOLD, samples: int = 10,
                 batch_size: int = 1000) -> tuple[list[int], list[int], list[Tensor]]:
    """Burda et al.'s activity A_u = Cov_x(E_q[u | x]); a unit is active if A_u > threshold.

    Returns (active count, units, A_u) per stochastic layer, bottom first; A_u is the
    unbiased two-estimate covariance (`unbiased_activity`).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    firsts: list[list[Tensor]] = []
    seconds: list[list[Tensor]] = []
    for i in range(0, len(x_all), batch_size):
        pairs = posterior_mean_pairs(model, x_all[i : i + batch_size].to(device), samples)
        if not firsts:
            firsts, seconds = [[] for _ in pairs], [[] for _ in pairs]
        for k, (m1, m2) in enumerate(pairs):
            firsts[k].append(m1.double().cpu())
            seconds[k].append(m2.double().cpu())
    model.train(was_training)
    activity = [unbiased_activity(torch.cat(a), torch.cat(b)) for a, b in zip(firsts, seconds)]
    active = [int((a > threshold).sum()) for a in activity]
    units = [len(a) for a in activity]
    return active, units, activity


@torch.no_grad()
def top_latent_kl_to_prior(model: HierarchicalModel, x_all: Tensor, batch_size: int = 1000) -> float:
    """KL(N(m, S) || N(0, I)) for the mean m and covariance S of one top-latent draw per image:
    how far the aggregate posterior q(z_top) is from the prior generation starts from, in nats
    (0 when its first two moments match N(0, I))."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    z = torch.cat([model(x_all[i : i + batch_size].to(device)).latents[-1].z.flatten(1).double().cpu()
                   for i in range(0, len(x_all), batch_size)])
    model.train(was_training)
    m, cov = z.mean(0), torch.cov(z.T).reshape(z.shape[1], z.shape[1])
    return 0.5 * float(torch.trace(cov) + m @ m - z.shape[1] - torch.logdet(cov))


# ----------------------------------------------------------------------------- samples


@torch.no_grad()
def sample_quality(model: HierarchicalModel, reference: Tensor, n: int = 10000, temperature: float = 1.0,
                   batch_size: int = 1000) -> dict[str, Any]:
    """Class histogram of `n` prior samples, its KL to uniform, and FID_MNIST against `reference` images."""
    judge = load_classifier()
    device = next(model.parameters()).device
    images = torch.cat([model.generate(min(batch_size, n - i), temperature, device).cpu() for i in range(0, n, batch_size)])
    hist = class_histogram(predict(judge, images))
    return {
        "class_histogram": hist.tolist(),
        "class_kl_to_uniform": kl_to_uniform(hist),
        "fid_mnist": frechet_distance(features(judge, images), features(judge, reference)),
        "prior_samples": n,
        "temperature": temperature,
    }


# ----------------------------------------------------------------------------- a whole run


def evaluate_model(model: HierarchicalModel, x_eval: Tensor, reference: Tensor, likelihood: str, output_variance: float = 0.5,
                   iw_samples: int = 1000, chunk: int | None = None, prior_samples: int = 10000, seed: int = 0,
                   progress: bool = False, compile: bool = False) -> dict[str, Any]:
    """All metrics for one model on one split. `x_eval` is what the likelihood scores
    (fixed binarization for Bernoulli), `reference` the continuous images FID compares with."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    elbo = split_elbo(model, x_eval, likelihood, output_variance)
    iw = iw_log_likelihood(model, x_eval, iw_samples, likelihood, output_variance, chunk, progress, compile)
    active, units, _ = active_units(model, x_eval)
    result: dict[str, Any] = {
        "elbo": elbo["elbo"],
        "recon": elbo["recon"],
        "nll": iw.nll,
        "nll_stderr": iw.stderr,
        # each image's log p(x) estimate, in the split's order: two models on the same images compare pairwise
        "per_image_log_px": [round(v, 4) for v in iw.per_image.tolist()],
        # and its ELBO from the same K samples: the per-image gap log p(x) - ELBO measures how tight the bound is
        "per_image_elbo": [round(v, 4) for v in iw.per_image_elbo.tolist()],
        "iw_samples": iw.iw_samples,
        "iw_chunk": iw.chunk,
        "iw_compiled": compile,
        "kl_per_layer": elbo["kl"],
        "kl_units": elbo["kl_units"],
        "latent_layers": model.latent_layers,
        "layer_order": "bottom first",
        "active_units": active,
        "latent_units": units,
        "images": len(x_eval),
        "top_latent_kl_to_prior": top_latent_kl_to_prior(model, x_eval),
    }
    if prior_samples > 0:
        result.update(sample_quality(model, reference, prior_samples))
    result["eval_seconds"] = time.perf_counter() - t0
    return result


def evaluate_run(run_dir: Path, iw_samples: int = 1000, split: str = "test", chunk: int | None = None, limit: int | None = None,
                 prior_samples: int = 10000, seed: int = 0, data_root: Path | None = None, progress: bool = True,
                 epoch: int | None = None, compile: bool = False) -> dict[str, Any]:
    """`python -m lvae evaluate`: load a run folder's latest checkpoint (or the weights it kept at the
    end of `epoch`), or a weights file (lvae.weights), and measure everything."""
    from lvae.config import ConfigError

    if iw_samples < 1:
        raise ConfigError(f"--iw-samples must be >= 1, got {iw_samples}")
    if chunk is not None and chunk < 1:
        raise ConfigError(f"--chunk must be >= 1, got {chunk}")
    cfg, model = load_trained(run_dir, epoch=epoch)
    data = load_split(cfg.train.dataset, split, data_root).head(limit)
    if cfg.train.dataset != "mnist":
        prior_samples = 0  # the judge knows digits only
    result = evaluate_model(model, evaluation_inputs(data, cfg.model.likelihood), data.images, cfg.model.likelihood,
                            cfg.model.output_variance, iw_samples, chunk, prior_samples, seed, progress, compile)
    return {"run": str(run_dir), **({"epoch": epoch} if epoch is not None else {}), "config": cfg.name, "model_kind": cfg.model_kind, "dataset": cfg.train.dataset,
            "likelihood": cfg.model.likelihood, "split": split, **result, "hardware": hardware()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """What the numbers were measured on."""
    import os

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def format_report(r: dict[str, Any]) -> str:
    """The human-readable form of `evaluate_run`'s result."""
    lines = [
        f"{r['run']} ({r['config']}, {r['model_kind']}, {r['likelihood']} likelihood, {r['images']} {r['split']} images)",
        f"  ELBO            {r['elbo']:.2f} nats/image (recon {r['recon']:.2f})",
        f"  NLL (IW, K={r['iw_samples']}) {r['nll']:.2f} ± {r['nll_stderr']:.2f} nats/image",
        f"  KL per layer    {[round(k, 2) for k in r['kl_per_layer']]} (bottom first)",
        f"  active units    {r['active_units']} of {r['latent_units']} (bottom first)",
    ]
    if "class_histogram" in r:
        lines += [
            f"  classes         {[round(h, 3) for h in r['class_histogram']]} (digits 0-9, {r['prior_samples']} prior samples)",
            f"  KL to uniform   {r['class_kl_to_uniform']:.4f} nats",
            f"  FID_MNIST       {r['fid_mnist']:.2f}",
        ]
    lines.append(f"  ({r['eval_seconds']:.0f} s)")
    return "\n".join(lines)
