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
#
# **Which setup.** The study was trained in this repo's *first* `paper` setup, before the
# paper code's choices were adopted (`docs/fidelity.md`: the variance floor, the leaky slope,
# batch norm in the latent heads, how the ladder merges, gradient clipping, Adam's ε). Its
# three digests, and `figures/warmup_*.png` that `make figures` draws from them, are of that
# setup; they stay as they are, because retraining the study would redraw those committed
# figures and the account below of what they show. Where this notebook trains, it trains
# today's `paper` setup: the step below, and a fourth run at the study's size with the
# study's per-epoch warm-up, set beside the study's own at the end (`Results.todays_warmup`;
# its digest is committed too, as `results/summaries/warmup-epoch-paper.json`). The slider's
# button and the live run stay in the study's setup, so that they compare with its runs.

# %%
# %matplotlib inline
import torch

from lvae.report import figures, plots
from lvae.experiments import runs
from lvae.data import model_inputs
from lvae.losses import compute_loss, kl_per_layer
from lvae.model import build_model
from lvae.schedules import beta_at, beta_curve
from lvae.training import Trainer
from lvae.report.widgets import WarmupExplorer

results = runs.Results()  # LVAE_FAST=1 makes everything small (the tests use it)
warmup_runs = results.warmup_summaries  # the study: three runs of the first setup
study = next(iter(warmup_runs.values()))
todays = results.todays_warmup  # the study's per-epoch run on today's `paper` setup (trained on first use)
cfg = todays.run_config
print(f"{cfg.train.limit} training images, {cfg.train.epochs} epochs of {study.iterations_per_epoch} iterations, "
      f"batch {cfg.train.batch_size}, latents {study.latent_sizes} (bottom first)")

# %% [markdown]
# ## One training step, in the open
#
# Every iteration of training does the same four things: read β for this iteration off
# the schedule, pass a batch through the model, add up the loss, take a gradient step.
# Here is one step of today's `paper` setup, at the study's size with its per-epoch warm-up,
# halfway through the warm-up. β is a pure function of where the run is:

# %%
figures.source(beta_at)

# %%
schedule = cfg.objective.beta  # linear_epoch: β steps once per epoch
ipe, epochs = todays.iterations_per_epoch, cfg.train.epochs
iteration = (schedule.steps - 1) // 2 * ipe  # the first iteration of the warm-up's middle epoch (β: 0, 1/(steps-1), ..., 1)
beta = beta_at(schedule, iteration, iteration // ipe, ipe * epochs, epochs)
print(f"{schedule}\nstep {iteration} of {ipe * epochs} (counting from 0), in epoch {iteration // ipe + 1} of {epochs}: β = {beta:.3f}")

# %% [markdown]
# A batch of training images, binarised afresh as the Trainer does for a Bernoulli
# likelihood (`model_inputs`), and one pass of the study's model, built and seeded as the
# Trainer builds it: these are the weights today's run started from. The loss is reckoned the
# same way at every step, so the step's iteration only changes β.

# %%
torch.manual_seed(cfg.train.seed)
model = build_model(cfg.model_kind, cfg.model)  # the paper's five-layer ladder, in training mode
images = results.data.train.images[: cfg.train.batch_size]  # (256, 1, 28, 28), grey levels in [0, 1]
x = model_inputs(images, cfg.model.likelihood, torch.Generator().manual_seed(cfg.train.seed))  # each pixel drawn 0 or 1
noise = torch.get_rng_state()  # kept, to draw the same latents again after the step
out = model(x)  # the likelihood's logits, and one LatentSample (q, p, z, q_hat) per layer
print(f"batch {tuple(x.shape)}, pixels on: {x.mean():.1%}; logits {tuple(out.x_logits.shape)}; "
      f"latents {[tuple(s.z.shape[1:]) for s in out.latents]} (bottom first)")

# %% [markdown]
# `compute_loss` is the objective of the first paragraph: the reconstruction term, each
# layer's KL averaged over the batch, and β times their sum.

# %%
figures.source(compute_loss)

# %%
terms = compute_loss(out, x, cfg.model.likelihood, beta, cfg.objective.kl_mode, cfg.objective.free_bits)
kl = [k.mean() for k in kl_per_layer(out, cfg.objective.kl_mode)]  # each layer's KL, nats per image
for s, k in zip(out.latents, kl):
    print(f"z{s.layer}: KL {k:7.2f} nats   β·KL {beta * k:7.2f}")
weighted = beta * sum(kl)
print(f"loss = recon {terms.recon:.2f} + β·ΣKL {weighted:.2f} = {terms.loss:.2f} nats per image")
print(f"ELBO (β = 1) = -(recon + ΣKL) = {terms.elbo:.2f}")
assert torch.isclose(terms.loss, terms.recon + weighted) and all(torch.equal(a, b) for a, b in zip(kl, terms.kl))

# %% [markdown]
# The gradient step: backpropagate the loss, clip the gradients as the paper's code does (their
# norm to `grad_clip`, then each element to `grad_clip_value`), and let Adam (with the code's ε)
# move every weight. On the same batch with the same noise, the loss is lower afterwards.

# %%
optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, eps=cfg.train.adam_eps)
optimizer.zero_grad()
terms.loss.backward()
norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
torch.nn.utils.clip_grad_value_(model.parameters(), cfg.train.grad_clip_value)
optimizer.step()
print(f"gradient norm {norm:.1f}, clipped to {cfg.train.grad_clip}; elements clipped to ±{cfg.train.grad_clip_value}")
torch.set_rng_state(noise)  # the draws of the pass above
after = compute_loss(model(x), x, cfg.model.likelihood, beta, cfg.objective.kl_mode, cfg.objective.free_bits)
print(f"loss before the step {terms.loss:.2f}, after {after.loss:.2f}")
assert after.loss < terms.loss

# %% [markdown]
# ## The loop the figures summarise
#
# `Trainer.step` is this same step with a run's bookkeeping around it: mixed precision,
# several processes, the importance-weighted objective, a guard against numbers that are not finite.
# `Trainer.fit` calls it for every batch of every epoch and logs the row it returns (β,
# reconstruction, KL per layer, …) to the run's `history.jsonl`.

# %%
figures.source(Trainer.step)

# %% [markdown]
# The figures below draw those rows, averaged over windows of a few iterations: the β they
# show for the study's "per iteration" run is `beta_at` at every one of its iterations.

# %%
run = warmup_runs["per iteration"]
every = torch.tensor(beta_curve(run.schedule, ipe, epochs), dtype=torch.float64)  # beta_at for each iteration
logged = every[: len(run.beta) * run.stride].reshape(-1, run.stride).mean(1)  # the digest keeps window means
assert torch.allclose(logged, torch.tensor(run.beta, dtype=torch.float64))
print(f"{len(every)} iterations in {len(run.beta)} windows of {run.stride}: the logged β is beta_at's in every one")

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
figures.summary_table(warmup_runs)

# %% [markdown]
# ## Today's `paper` setup
#
# The study's "per epoch" run again, on today's setup: the same images, epochs and β, with
# the paper code's choices (`docs/fidelity.md`). The warm-up's effect is read the same way.
# Ten epochs on a sixth of the data show how each setup starts, not where it ends: the two
# setups are compared at full size, detail by detail and seed by seed, by `make factors`
# (`docs/fidelity.md`).

# %%
both = {"per epoch, first setup": warmup_runs["per epoch"], "per epoch, today's paper setup": todays}
plots.warmup_effect(both)

# %%
figures.summary_table(both)

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
# The logic lives in `lvae.report.widgets.warmup_view` (tested); the widget only wires sliders to it.

# %%
explorer = WarmupExplorer(warmup_runs, train=results.live_warmup)
explorer

# %% [markdown]
# ## A live run from code
#
# The same thing the button does, from a cell: a warm-up that rises per iteration from
# β = 0.2 over the first two epochs. At full size this trains for about as long as one
# run of the study (the time estimate is printed first); it is cached in `runs/` after that.

# %%
live_schedule = runs.warmup_schedule("linear_iter", start=0.2, end=1.0, length_epochs=2, ipe=study.iterations_per_epoch)
live = results.live_warmup(live_schedule)
plots.warmup_effect({**warmup_runs, "live: 0.2 → 1 over 2 epochs": live})

# %%
figures.summary_table({**warmup_runs, "live": live})
