# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · LVAE against a vanilla VAE
#
# Two models with the very same trunks, trained with the same budget (the `seed`
# configuration: 3 epochs, batch 128, Adam 1e-3, the same β warm-up): the **LVAE**, with
# a stochastic spatial inner latent merged with the decoder's prior, and a **VAE** whose
# inner layer is deterministic, so noise enters only at the top. They differ only in
# where noise enters (`lvae.model.VanillaVAE`). Every figure here is also a PNG in
# `figures/`, drawn by the same function (`python -m lvae.figures`).

# %%
# %matplotlib inline
import pandas as pd
import torch
from IPython.display import display

from lvae import figures
from lvae.evaluation import iw_log_likelihood
from lvae.training import evaluation_inputs

results = figures.Results()  # LVAE_FAST=1 makes everything small (the tests use it)
models = results.headline_models
summaries = results.headline_summaries
pd.DataFrame({name: {"parameters": sum(p.numel() for p in m.parameters()),
                     "stochastic layers": sum(m.stochastic), "epochs": summaries[name].run_config.train.epochs}
              for name, m in models.items()}).T

# %% [markdown]
# ## Samples from the prior
#
# 64 draws from each model at temperature 1: the top latent from $\mathcal N(0, I)$,
# then down through the decoder.

# %%
figures.fig_samples(results)

# %% [markdown]
# ## Reconstructions
#
# The first twelve test digits and each model's reconstruction (one top-down sample).

# %%
figures.fig_reconstructions(results)

# %% [markdown]
# ## The top latent against N(0, I)
#
# Samples from the aggregate posterior $q(z_{top}) = \mathbb E_x\, q(z_{top}\mid x)$ over
# test images, coloured by digit. Generation draws $z_{top}$ from $\mathcal N(0, I)$, so
# the closer the cloud is to that (filling the circles, each unit's marginal on the dashed
# curve), the more of what the decoder sees at sampling time it has seen in training.
# Class islands with empty space between them would mean prior samples land where no
# digit was encoded.

# %%
figures.fig_top_latent(results)

# %% [markdown]
# ## Which digits do the samples show?
#
# A small classifier (`lvae.classifier`, shipped in `lvae/assets/`) labels prior samples.
# A model that covers all of MNIST gives about a tenth to each digit (the black ticks are
# the test set's own frequencies); a missing bar is a mode the model dropped.

# %%
figures.fig_class_histogram(results)

# %% [markdown]
# ## KL and active units, per layer
#
# Where the information goes. The VAE's inner layer is deterministic ('det.'): it has no
# KL and no units of its own.

# %%
figures.fig_kl_per_layer(results)

# %%
figures.fig_active_units(results)

# %%
figures.summary_table(summaries)

# %% [markdown]
# ### The paper's five-layer model
#
# In the two-layer `seed` model every unit stays active. Sønderby et al.'s five-layer MLP
# ladder (the `paper` configuration, trained for many epochs by the evaluation scripts) is
# where layers can switch off. Its numbers come from the committed `results/paper-*.json`;
# where they are missing this cell says which command makes them.

# %%
try:
    display(figures.fig_paper_layers(results))
except figures.SkipFigure as e:
    print(e)

# %% [markdown]
# ## Likelihood over training
#
# The test ELBO after each epoch (paper KL, β = 1 — a true bound whatever β training used).
# Where the evaluation results exist (`results/seed-*.json`), the final importance-weighted
# bound is marked too.

# %%
figures.fig_likelihood(results)

# %% [markdown]
# The importance-weighted bound can also be measured here, on a few test images: with
# K samples, $\log p(x) \ge \mathcal L_K \ge \mathcal L_1 = $ ELBO, and $\mathcal L_K$ tightens as K grows.

# %%
b = results.budget
x = evaluation_inputs(results.data.test.head(b.iw_images), "gaussian")
rows = {}
for name, m in models.items():
    torch.manual_seed(figures.SEED)
    one = iw_log_likelihood(m, x, 1, m.config.likelihood, m.config.output_variance)
    k = iw_log_likelihood(m, x, b.iw_samples, m.config.likelihood, m.config.output_variance)
    rows[name] = {"images": len(x), "L_1 (ELBO)": round(-one.nll, 2), f"L_{b.iw_samples}": round(-k.nll, 2),
                  "± (std. err.)": round(k.stderr, 2)}
pd.DataFrame(rows).T
