# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The deterministic encoder pass
#
# A Ladder VAE infers its latents in two passes. This notebook is about the first one,
# the **bottom-up pass** (`LadderVAE.bottom_up`): the image climbs the deterministic
# blocks `up_0, up_1, …`, and after each block a head reads off the encoder's Gaussian
# $\hat q(z_k\mid x) = \mathcal N(\hat\mu_k, \hat\sigma_k^2)$. Nothing is sampled here;
# the pass only *stores* $(\hat\mu_k, \log\hat\sigma_k^2)$ for every layer, to be merged
# with the decoder's opinion on the way down (notebook 02).
#
# The model is the `seed` configuration: a conv rung whose latent keeps a 7×7 spatial
# shape with 8 channels, and a dense rung with a 16-unit top latent. Its weights come
# from `runs/seed-lvae/` (trained on first use, about half a minute on 2 CPU cores).

# %%
# %matplotlib inline
import torch
from IPython.display import display

from lvae import figures, plots

torch.set_grad_enabled(False)  # inference only: no autograd graphs
results = figures.Results()  # full size; LVAE_FAST=1 makes everything small (the tests use it)
model = results.headline_model("LVAE")
test = results.data.test
x, labels = test.images[:16], test.labels[:16]  # (16, 1, 28, 28), (16,)
print(f"budget: {'fast' if figures.fast_mode() else 'full'}; {sum(p.numel() for p in model.parameters()):,} parameters")
model

# %% [markdown]
# ## One batch up the ladder
#
# `bottom_up` returns one Gaussian per layer, bottom first. Each is stored as a mean and
# a log-variance of the latent's own shape, with a batch dimension in front.

# %%
encoder = model.bottom_up(x)
figures.layer_table(model, encoder)

# %% [markdown]
# ## The spatial inner latent, as maps
#
# The conv rung's latent is not a vector but a stack of 7×7 maps: each unit sits over a
# 4×4 patch of the image. Below, the means and log-variances of two test digits. The
# means follow the stroke; the variances say where the encoder is sure (low) and where it
# leaves room for the decoder's prior (high) — that balance is exactly what the merge in
# notebook 02 uses.

# %%
g = encoder[0]
for i in range(2):
    display(plots.latent_maps(g.mu[i], g.logvar[i], image=x[i], title=f"q̂(z₀|x) of test digit {i} (a {int(labels[i])})"))

# %% [markdown]
# ## The dense top latent
#
# The top rung ends in a 16-unit vector. One row per image of the batch; units whose mean
# barely changes from row to row carry little information about the image.

# %%
top = encoder[-1]
plots.dense_latent(top.mu, top.logvar, labels=labels, title="q̂(z_top|x) for the batch")

# %% [markdown]
# ## No sampling: two passes, identical numbers
#
# Run the bottom-up pass twice on the same batch: every stored mean and log-variance is
# bit-for-bit the same. A full forward pass (bottom-up *and* top-down) is different each
# time, because the top-down pass samples.

# %%
again = model.bottom_up(x)
identical = all(torch.equal(a.mu, b.mu) and torch.equal(a.logvar, b.logvar) for a, b in zip(encoder, again))
torch.manual_seed(figures.SEED)  # fixed, so the printed difference is the same on every run
first, second = model(x), model(x)
full_pass_gap = (first.x_mean - second.x_mean).abs().max().item()
assert identical and full_pass_gap > 0
print(f"bottom-up pass twice: identical = {identical}")
print(f"full pass twice: largest pixel difference of the reconstructions = {full_pass_gap:.3g}")
