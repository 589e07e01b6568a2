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
# shape with 8 channels, and a dense rung with a 16-unit top latent. Its trained weights are
# committed as `results/seed-lvae.pt` (`python -m lvae.results save` wrote them), and the core's
# loader, `lvae.weights.load_trained`, reads them back with the config they were trained with.

# %%
# %matplotlib inline
import torch
from IPython.display import display

from lvae.report import figures, plots
from lvae.experiments.runs import ROOT  # the repository: the notebooks run from notebooks/
from lvae.data import load_split
from lvae.elementwise import softplus
from lvae.latents import GaussianHead
from lvae.model import LadderVAE
from lvae.weights import load_trained

torch.set_grad_enabled(False)  # inference only: no autograd graphs
cfg, model = load_trained(ROOT / "results" / "seed-lvae.pt")  # (RunConfig, model in eval mode)
test = load_split("mnist", "test", ROOT / "data")
x, labels = test.images[:16], test.labels[:16]  # (16, 1, 28, 28), (16,)
print(f"{cfg.name}: {cfg.train.epochs} epochs; {sum(p.numel() for p in model.parameters()):,} parameters")
model

# %% [markdown]
# ## The pass, in the package's own lines
#
# `LadderVAE.bottom_up`, the whole pass (the `features` list is for the factor study's
# "concat" merge, which reads each $d_k$; the seed model passes none):

# %%
figures.source(LadderVAE.bottom_up)

# %% [markdown]
# Rung $k$'s block turns what is below into $d_k = \mathrm{up}_k(d_{k-1})$ (with
# $d_{-1} = x$), and its head reads the encoder's Gaussian off $d_k$. In the seed model the
# next block reads $d_k$ itself; in the paper code's setup (`ladder_up = "mean"`,
# `reads_means`) it reads the Gaussian's mean $\hat\mu_k$ instead.

# %% [markdown]
# The seed model has two rungs, so the loop runs twice. Here it is one line at a time, on
# the 16 test digits:

# %%
d0 = model.up[0](x)  # two stride-2 convs: 28×28 -> 7×7
q0 = model.enc_heads[0](d0)  # q̂(z₀|x), a spatial latent
d1 = model.up[1](d0)  # flattened, then a dense layer
q1 = model.enc_heads[1](d1)  # q̂(z₁|x), the dense top latent
for name, t in {"x": x, "d0 = up0(x)": d0, "q0: mu, logvar": q0.mu, "d1 = up1(d0)": d1, "q1: mu, logvar": q1.mu}.items():
    print(f"{name:>15}  {tuple(t.shape)}")

# %% [markdown]
# A head is one linear map (a 3×3 conv for the spatial latent) to twice the latent's
# channels, split in two: the mean, and a raw number that softplus makes into a positive
# variance, kept off zero by a floor.

# %%
figures.source(GaussianHead.forward)

# %% [markdown]
# On the numbers: the first four top units of the first digit, from the head's raw output
# to the stored Gaussian.

# %%
head = model.enc_heads[1]
mu, raw = head.net(d1).chunk(2, dim=1)  # (16, 16) each
var = softplus(raw) + head.var_floor  # the package's softplus (lvae.elementwise), as the head uses
for name, t in {"raw": raw, "softplus(raw) + floor": var, "stored logvar": q1.logvar, "stored mu": q1.mu}.items():
    print(f"{name:>21}  {t[0, :4].numpy().round(3)}")
assert torch.equal(mu, q1.mu) and torch.allclose(var.log(), q1.logvar)

# %% [markdown]
# ## One batch up the ladder
#
# `bottom_up` itself gives the same Gaussians, one per layer, bottom first. Each is stored
# as a mean and a log-variance of the latent's own shape, with a batch dimension in front.

# %%
encoder = model.bottom_up(x)
assert all(torch.equal(a.mu, b.mu) and torch.equal(a.logvar, b.logvar) for a, b in zip(encoder, [q0, q1]))
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
torch.manual_seed(0)  # fixed, so the printed difference is the same on every run
first, second = model(x), model(x)
full_pass_gap = (first.x_mean - second.x_mean).abs().max().item()
assert identical and full_pass_gap > 0
print(f"bottom-up pass twice: identical = {identical}")
print(f"full pass twice: largest pixel difference of the reconstructions = {full_pass_gap:.3g}")
