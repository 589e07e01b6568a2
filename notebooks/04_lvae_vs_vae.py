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
# in inference. Every figure here is also a PNG in `figures/`, drawn by the same function
# (`python -m lvae.report.figures`).

# %%
# %matplotlib inline
import pandas as pd
import torch
from IPython.display import display

from lvae.report import figures
from lvae.experiments import runs
from lvae.evaluation import iw_log_likelihood
from lvae.training import evaluation_inputs

results = runs.Results()  # LVAE_FAST=1 makes everything small (the tests use it)
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
# Where the information goes. The top-latent VAE's inner layer is deterministic ('det.'):
# it has no KL and no units of its own.

# %%
figures.fig_kl_per_layer(results)

# %%
figures.fig_active_units(results)

# %%
figures.summary_table(summaries)

# %% [markdown]
# ## The paper's comparison: the ladder against a hierarchical VAE
#
# In the two-layer `seed` model every unit stays active. Sønderby et al.'s five-layer MLP
# ladder (the `paper` configuration) is where layers switch off, and their baseline is a
# VAE with the *same* five stochastic layers, inferred bottom-up. `make paper` trains both
# at every depth from 1 to 5, with and without batch norm and KL warm-up, at three training
# seeds each, set up as the paper's code trains (`docs/fidelity.md`), and a long-trained
# 5-layer pair whose weights are scored at five training budgets. Its results are committed
# in `results/paper/`, and the cells below draw them (nothing is trained here; where a
# result is missing the cell says which command makes it). Each comparison is paired image
# by image and seed by seed, and its 95 % interval includes the spread across training
# seeds (`lvae/experiments/effects.py`); the verdicts all come from one rule in `lvae/experiments/effects.py`:

# %%
from IPython.display import Markdown

from lvae.experiments import claims

Markdown(claims.render(results.results_dir))

# %% [markdown]
# Test NLL against depth (the paper's figure 3), the ladder's advantage against training
# budget, the 5-layer pair's ELBO over training, the KL of every latent unit over training
# (dark: a unit the model switched off), active units per layer, and each layer's posterior
# samples projected on two principal components.

# %%
for name in ("paper_nll_vs_depth.png", "paper_budget_curve.png", "paper_elbo_curves.png", "paper_kl_units.png", "paper_active_units.png",
             "paper_posterior_pca.png"):
    try:
        display(figures.FIGURES[name][1](results))
    except figures.SkipFigure as e:
        print(f"{name}: {e}")

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
    torch.manual_seed(runs.SEED)
    one = iw_log_likelihood(m, x, 1, m.config.likelihood, m.config.output_variance)
    k = iw_log_likelihood(m, x, b.iw_samples, m.config.likelihood, m.config.output_variance)
    rows[name] = {"images": len(x), "L_1 (ELBO)": round(-one.nll, 2), f"L_{b.iw_samples}": round(-k.nll, 2),
                  "± (std. err.)": round(k.stderr, 2)}
pd.DataFrame(rows).T
