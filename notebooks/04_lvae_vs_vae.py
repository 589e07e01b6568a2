# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · LVAE against two VAEs
#
# Two comparisons. First the seed author's: two models with the very same trunks, trained
# with the same budget (the `seed` configuration: 3 epochs, batch 128, Adam 1e-3, the same
# β warm-up): the **LVAE**, with a stochastic spatial inner latent merged with the
# decoder's prior, and a **top-latent VAE** (`lvae.model.TopLatentVAE`) whose inner layer
# is deterministic. It has one latent of 16 units where the ladder has 408, so it differs
# from the ladder in capacity as well as in inference. Then the paper's: the five-layer
# ladder against a **hierarchical VAE** (`lvae.model.HierarchicalVAE`) with the same
# stochastic layers and the same generative model, inferred bottom-up: the two differ only
# in inference.
#
# Models are compared on the importance-weighted bound $\mathcal L_K$ on $\log p(x)$. This
# notebook computes it in the open on a few test images (the log-weights, their
# log-mean-exp, and what K does) and checks it against the package's `iw_log_likelihood`
# before it shows any table. Both seed models' weights are committed (`results/seed-lvae.pt`,
# `results/seed-vae.pt`) and load with the core's `lvae.weights.load_trained`. The figures
# `make figures` draws for both comparisons are collected in `docs/figures.md`.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown

from lvae.report import figures, plots
from lvae.experiments.runs import ROOT  # the repository: the notebooks run from notebooks/
from lvae.data import evaluation_inputs, load_split
from lvae.evaluation import active_units, iw_log_likelihood
from lvae.losses import kl_per_layer, log_weight_terms, log_weights
from lvae.weights import load_trained

torch.set_grad_enabled(False)  # inference only: no autograd graphs
SEED = 0  # every draw below starts from it, so the printed numbers are the same on every run
RUNS = {"LVAE": "seed-lvae", "top-latent VAE": "seed-vae"}  # results/<run>.pt and .json
loaded = {name: load_trained(ROOT / "results" / f"{run}.pt") for name, run in RUNS.items()}  # (RunConfig, model)
models = {name: model for name, (_, model) in loaded.items()}
cfg = loaded["LVAE"][0]  # both are the `seed` recipe: the same likelihood, trunks and budget
test = load_split("mnist", "test", ROOT / "data")
pd.DataFrame({name: {"parameters": sum(p.numel() for p in m.parameters()), "stochastic layers": sum(m.stochastic),
                     "epochs": c.train.epochs, "likelihood": c.model.likelihood}
              for name, (c, m) in loaded.items()}).T

# %% [markdown]
# ## Samples from the prior
#
# 64 draws from each model at temperature 1 (`generate`): the top latent from
# $\mathcal N(0, I)$, then down through the decoder.

# %%
grids = {}
for name, m in models.items():
    torch.manual_seed(SEED)
    grids[name] = m.generate(64)  # (64, 1, 28, 28): the likelihood's mean
plots.image_grids(grids, nrow=8, title="Samples from the prior N(0, I), temperature 1")

# %% [markdown]
# ## Reconstructions
#
# The first twelve test digits and each model's reconstruction: one full pass, bottom-up then
# top-down with a sample at every layer, and the likelihood's mean.

# %%
x12 = test.images[:12]  # (12, 1, 28, 28)
torch.manual_seed(SEED)
plots.image_rows({"data": x12, **{name: m(x12).x_mean for name, m in models.items()}},
                 title="Test digits and their reconstructions (mean of p(x|z))")

# %% [markdown]
# ## The top latent against N(0, I)
#
# One draw from $q(z_{top}\mid x)$ for each of 2000 test images: samples of the aggregate
# posterior $q(z_{top}) = \mathbb E_x\, q(z_{top}\mid x)$, coloured by digit. Generation draws
# $z_{top}$ from $\mathcal N(0, I)$, so the closer the cloud is to that (filling the circles,
# each unit's marginal on the dashed curve), the more of what the decoder sees at sampling
# time it has seen in training. Class islands with empty space between them would mean prior
# samples land where no digit was encoded.

# %%
split = test.head(2000)
codes = {}
for name, m in models.items():
    torch.manual_seed(SEED)
    codes[name] = (m(split.images).latents[-1].z.flatten(1), split.labels)  # (2000, 16), (2000,)
plots.top_latent(codes)

# %% [markdown]
# ## KL and active units, per layer
#
# Where the information goes, on the same 2000 test images: each stochastic layer's KL from
# its prior (`kl_per_layer`, averaged over images), and its active units, those whose
# posterior mean moves with the image, $\mathrm{Cov}_x(\mathbb E_q[z_u]) > 0.01$ (Burda et
# al., 2016; `active_units`). The top-latent VAE's inner layer is deterministic: it has no
# KL and no units of its own, so it has no row.

# %%
rows = []
for name, m in models.items():
    torch.manual_seed(SEED)
    out = m(split.images)
    kl = kl_per_layer(out)  # one (2000,) per stochastic layer, bottom first
    active, units, _ = active_units(m, split.images)
    for s, k, a, n in zip(out.latents, kl, active, units):
        rows.append({"model": name, "layer": s.layer, "units": n, "KL (nats)": round(k.mean().item(), 2), "active units": a})
pd.DataFrame(rows).set_index(["model", "layer"])

# %% [markdown]
# ## The importance-weighted bound, in the open
#
# Draw $K$ samples $z^{(1)}, \dots, z^{(K)}$ from the posterior $q(z\mid x)$ (every layer,
# top-down) and weigh each by how much more likely the model finds it than the posterior
# did. Its log-weight is
#
# $$a_k = \log p(x, z^{(k)}) - \log q(z^{(k)}\mid x)
#       = \log p(x\mid z_0^{(k)}) + \sum_l \left[\log p(z_l^{(k)}\mid z_{l+1}^{(k)}) - \log q(z_l^{(k)}\mid \cdot)\right],$$
#
# and the bound is the log of the weights' mean,
# $\mathcal L_K = \log \frac1K \sum_k e^{a_k} \le \log p(x)$ (Jensen; Burda et al., 2016).
# With one sample it is the ELBO, $\mathbb E[\mathcal L_1] = \mathbb E_q[a]$, and its
# expectation rises towards $\log p(x)$ as $K$ grows. The package computes the two terms of
# $a_k$ from one pass that draws every image's noise $R$ times (`model(x, repeats=R)`):

# %%
figures.source(log_weight_terms)

# %% [markdown]
# On eight test digits, in the evaluation's view of them (`evaluation_inputs`: the seed
# recipe's Gaussian likelihood scores the grey levels), with K = 1000 draws each for the LVAE:

# %%
K = 1000
model, likelihood, variance = models["LVAE"], cfg.model.likelihood, cfg.model.output_variance
x = evaluation_inputs(test.head(8), likelihood)  # (8, 1, 28, 28)
torch.manual_seed(SEED)
out = model(x, repeats=K)  # the deterministic part once per image, the noise K times: 8 * K rows
log_px, log_ratio = log_weight_terms(out, x, likelihood, variance)  # (8, K) each
assert torch.equal(log_px + log_ratio, log_weights(out, x, likelihood, variance))  # the package's own sum
log_px, log_ratio = log_px.double(), log_ratio.double()
a = log_px + log_ratio  # (8, K): log p(x, z) - log q(z | x) per draw
pd.DataFrame({"log p(x|z)": log_px.mean(1), "log p(z) - log q(z|x)": log_ratio.mean(1), "a: mean": a.mean(1),
              "a: spread (std)": a.std(1), "a: largest": a.max(1).values}).round(2).rename_axis("image")

# %% [markdown]
# The mean log-weight is the ELBO, estimated from 1000 samples. The bound takes the log of the
# mean *weight* instead, which the largest weights dominate: $\mathcal L_k$ is the
# log-mean-exp of $k$ log-weights, and `torch.logsumexp` keeps it finite when $e^{a}$ is not.
# One $\mathcal L_k$ is itself random; to see its expectation, the 1000 draws are cut into
# 1000 / k disjoint groups of $k$ and the groups' bounds averaged (for $k$ = 1000, the one group).

# %%
def expected_bound(a: torch.Tensor, k: int) -> torch.Tensor:
    """Each image's L_k averaged over the disjoint groups of k draws in `a` (B, K): (B,)."""
    groups = a[:, : a.shape[1] // k * k].reshape(len(a), -1, k)  # (B, K // k, k)
    return (torch.logsumexp(groups, 2) - math.log(k)).mean(1)


ks = [k for k in (1, 3, 10, 30, 100, 300, 1000) if k <= K]
bound = pd.DataFrame({f"K = {k}": expected_bound(a, k) for k in ks}).rename_axis("image")  # (8, len(ks))
pd.concat([bound, bound.mean().to_frame("mean").T]).round(2)

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=100)
ax.plot(ks, bound.sub(bound["K = 1"], axis=0).T.to_numpy(), color="0.75", lw=1)
ax.plot(ks, bound.sub(bound["K = 1"], axis=0).mean().to_numpy(), color="C0", lw=2.5, marker="o", label="mean of 8 images")
ax.set(xscale="log", xlabel="K, samples per image", ylabel="$\\mathcal{L}_K - \\mathcal{L}_1$ (nats)",
       title="The importance-weighted bound rises with K (seed LVAE)")
ax.legend(loc="upper left")
fig.tight_layout()

# %% [markdown]
# The package's estimator, `iw_log_likelihood`, does the same thing over a whole split, in
# passes that fit in memory, on a copy of the model with any batch norm folded into the layer
# before it. Given the same images, the same seed and one pass of K draws per image
# (`chunk` = 8 K rows), it draws exactly the noise above, and its per-image bound is the one
# computed here:

# %%
torch.manual_seed(SEED)
estimate = iw_log_likelihood(model, x, K, likelihood, variance, chunk=len(x) * K)
ours = torch.logsumexp(a, 1) - math.log(K)  # (8,)
gap = (ours - estimate.per_image).abs().max().item()
assert gap < 1e-3, gap
print(f"L_{K} here: {ours.mean():.4f}; iw_log_likelihood: {-estimate.nll:.4f} nats per image "
      f"(largest per-image difference {gap:.1e})")

# %% [markdown]
# ## The two seed models on the bound
#
# The same estimator on 200 test images for both models, with $K = 1$ (the ELBO) and
# $K = 100$, the K of the committed evaluations; the last columns are those evaluations on the
# whole test set (`results/seed-*.json`, `python -m lvae.results save`). Higher is better; the
# nats of this Gaussian likelihood of grey levels are not comparable with the paper's
# Bernoulli likelihood of binarised digits.

# %%
from lvae.runfiles import read_json

x200 = evaluation_inputs(test.head(200), likelihood)
rows = {}
for name, m in models.items():
    torch.manual_seed(SEED)
    one = iw_log_likelihood(m, x200, 1, likelihood, variance)
    hundred = iw_log_likelihood(m, x200, 100, likelihood, variance)
    saved = read_json(ROOT / "results" / f"{RUNS[name]}.json", "a result lvae wrote")
    rows[name] = {"L_1 (ELBO), 200 images": round(-one.nll, 2), "L_100, 200 images": round(-hundred.nll, 2),
                  "std. err.": round(hundred.stderr, 2),
                  f"L_{saved['iw_samples']}, {saved['images']} images": round(-saved["nll"], 2),
                  "std. err., all images": round(saved["nll_stderr"], 2)}
pd.DataFrame(rows).T

# %% [markdown]
# ## The paper's comparison: the ladder against a hierarchical VAE
#
# In the two-layer `seed` model every unit stays active. Sønderby et al.'s five-layer MLP
# ladder (the `paper` configuration) is where layers switch off, and their baseline is a
# VAE with the *same* five stochastic layers, inferred bottom-up. `make paper` trains both
# at every depth from 1 to 5, with and without batch norm and KL warm-up, at three training
# seeds each, set up as the paper's code trains (`docs/fidelity.md`), and a long-trained
# 5-layer pair whose weights are scored at five training budgets, all with the estimator
# above. Its results are committed in `results/paper/` (nothing is trained here). Each
# comparison is paired image by image and seed by seed, and its 95 % interval includes the
# spread across training seeds; the verdicts all come from one rule in
# `lvae/experiments/effects.py`. (docs/claims.md also has the factor study's row, which grows as its
# runs finish: `make factors`.)

# %%
from lvae.experiments import claims

Markdown(claims.render(ROOT / "results", studies=False))

# %% [markdown]
# ## The figures
#
# The paper's figures drawn from those results (test NLL against depth, the ladder's advantage
# against training budget, the 5-layer pair's ELBO over training, the KL of every latent unit
# over training, active units per layer, each layer's posterior samples projected on two
# principal components), and the seed comparison's own (the class histogram of prior samples,
# KL over training, the likelihood over training), are in
# [`docs/figures.md`](../docs/figures.md); `make figures` draws them all.
