# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · KL warm-up
#
# The loss is $-\log p(x\mid z) + \beta \sum_k \mathrm{KL}_k$. Early in training the
# decoder is poor, and a latent unit that carries information costs KL before it pays
# back in reconstruction; with $\beta = 1$ from the start, many units switch off
# (their posterior collapses onto the prior) and rarely come back. Sønderby et al. warm
# the KL up: $\beta$ rises from 0 to 1 over the first epochs, so units can become useful
# before they are charged in full.
#
# `BetaSchedule` offers three shapes: `linear_iter` (β rises at every iteration),
# `linear_epoch` (β steps once per epoch) and `constant`. β is a pure function of the
# iteration (`lvae.schedules.beta_at`), so a resumed run sees exactly the same β.
#
# **The study.** The paper's five-layer MLP ladder (Bernoulli likelihood, batch norm),
# trained three times on a subset of MNIST, identical except for β: no warm-up, a warm-up
# rising per iteration, and one rising per epoch. Each run kept a checkpoint per epoch,
# so active units can be counted over training. The digests are committed under
# `results/summaries/`; where one is missing the run is trained first.

# %%
# %matplotlib inline
from lvae import figures, plots
from lvae.widgets import WarmupExplorer

results = figures.Results()  # LVAE_FAST=1 makes everything small (the tests use it)
runs = results.warmup_summaries
study = next(iter(runs.values()))
cfg = study.run_config
print(f"{cfg.train.limit} training images, {cfg.train.epochs} epochs of {study.iterations_per_epoch} iterations, "
      f"batch {cfg.train.batch_size}, latents {study.latent_sizes} (bottom first)")

# %% [markdown]
# ## The schedules

# %%
figures.fig_warmup_schedules(results)

# %% [markdown]
# ## Their effect
#
# Reconstruction on the training batches, the KL each layer ends with on the test set
# (log scale: the top layers carry far less than the bottom one), and the number of active
# units over training — a unit is active when its posterior mean varies with the input,
# $\mathrm{Cov}_x(\mathbb E_q[z_u]) > 0.01$ (Burda et al., 2016).

# %%
figures.fig_warmup_effect(results)

# %%
figures.summary_table(runs)

# %% [markdown]
# ## Explore: the sliders
#
# Move the sliders to shape a warm-up: where β starts and ends, over how many epochs it
# rises, and whether it rises every iteration or once per epoch. The dashed line is your
# schedule; the measured run whose β is closest is highlighted. **Train this schedule**
# trains a short run with exactly your schedule (the study's model and size) and adds it
# as "your run". Without a live kernel (on GitHub, or a headless run) the cell shows a
# static picture of the sliders' starting position instead.
#
# The logic lives in `lvae.widgets.warmup_view` (tested); the widget only wires sliders to it.

# %%
explorer = WarmupExplorer(runs, train=results.live_warmup)
explorer

# %% [markdown]
# ## A live run from code
#
# The same thing the button does, from a cell: a warm-up that rises per iteration from
# β = 0.2 over the first two epochs. At full size this trains for about as long as one
# run of the study (the time estimate is printed first); it is cached in `runs/` after that.

# %%
live_schedule = figures.warmup_schedule("linear_iter", start=0.2, end=1.0, length_epochs=2, ipe=study.iterations_per_epoch)
live = results.live_warmup(live_schedule)
plots.warmup_effect({**runs, "live: 0.2 → 1 over 2 epochs": live})

# %%
figures.summary_table({**runs, "live": live})
