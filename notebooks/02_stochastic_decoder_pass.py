# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · The stochastic decoder pass
#
# The second pass runs top-down (`LadderVAE.top_down`). It samples the top latent from
# the encoder's $\hat q(z_{L-1}\mid x)$; at every layer below, the decoder proposes a
# prior $p(z_k\mid z_{k+1})$ from the sample above, the prior and the stored encoder
# Gaussian are **merged** into one, and $z_k$ is drawn from the merge:
#
# $$\sigma_k^2 = \frac{1}{\hat\sigma_k^{-2} + \sigma_{p,k}^{-2}},\qquad
#   \mu_k = \sigma_k^2\left(\hat\mu_k\,\hat\sigma_k^{-2} + \mu_{p,k}\,\sigma_{p,k}^{-2}\right).$$
#
# The merged mean is a weighted average of the two means; the weight of the encoder is
# $\sigma_p^2/(\hat\sigma^2 + \sigma_p^2)$ = sigmoid$(\log\sigma_p^2 - \log\hat\sigma^2)$:
# whoever is surer has more say. The same `seed` LVAE as notebook 01.

# %%
# %matplotlib inline
import torch
from IPython.display import display

from lvae import figures, plots
from lvae.latents import Gaussian, merge_gaussians

torch.set_grad_enabled(False)  # inference only: no autograd graphs
results = figures.Results()  # LVAE_FAST=1 makes everything small (the tests use it)
model = results.headline_model("LVAE")
torch.manual_seed(figures.SEED)
x, labels = results.data.test.images[:64], results.data.test.labels[:64]  # (64, 1, 28, 28)

# %% [markdown]
# ## Sampling the top, and the decoder's prior one layer down
#
# The top latent is drawn from the encoder's Gaussian with the reparameterisation trick,
# $z = \hat\mu + \hat\sigma\,\epsilon$. The decoder turns it into a prior over the spatial
# inner latent, of the inner latent's shape.

# %%
encoder = model.bottom_up(x)
z_top = encoder[-1].sample()  # (64, 16)
prior_inner = model.prior(0, z_top)  # p(z_0 | z_1): mean and log-variance of shape (64, 8, 7, 7)
print("z_top:", tuple(z_top.shape), "  prior over z_0:", tuple(prior_inner.mu.shape))
figures.layer_table(model, [prior_inner, Gaussian.standard(z_top)])  # the priors: p(z_0 | z_1), and N(0, I) at the top

# %% [markdown]
# ## The precision-weighted merge, made visible
#
# For one digit, three units of the inner latent: one where the encoder is much surer than
# the decoder (the merge follows $\hat q$), one where both are about as sure (the merge
# sits between them, narrower than either), and one where the decoder's prior is surer.
# The merged Gaussian is always narrower than both of its parents.

# %%
view = figures.merge_view(model, x[:1])
units = figures.illustrative_units(view)
plots.gaussian_merge(units)

# %% [markdown]
# The curves are the model's own numbers. As a check, the merged variance is the inverse
# of the summed precisions, and its mean the precision-weighted average, for every unit:

# %%
mu, logvar = merge_gaussians(view["mu_q"], view["logvar_q"], view["mu_p"], view["logvar_p"])
precision = view["logvar_q"].neg().exp() + view["logvar_p"].neg().exp()
expected_mu = (view["mu_q"] * view["logvar_q"].neg().exp() + view["mu_p"] * view["logvar_p"].neg().exp()) / precision
assert torch.allclose(logvar.exp(), 1 / precision, rtol=1e-4) and torch.allclose(mu, expected_mu, rtol=1e-4, atol=1e-5)
assert torch.allclose(mu, view["mu"]) and torch.allclose(logvar, view["logvar"])
print(f"checked {mu.numel()} units: merged variance = 1 / (sum of precisions), mean = precision-weighted average")

# %% [markdown]
# ## How the weights move with the variances
#
# Every unit of a batch of 64 digits. Left: the encoder's log-variance against the
# decoder's, coloured by the encoder's weight; on the diagonal both have equal say.
# Right: the weight is a sigmoid of the log-variance gap, and the histogram shows where
# this model's units actually sit on it.

# %%
batch_view = figures.merge_view(model, x)
plots.merge_weights(batch_view["logvar_q"], batch_view["logvar_p"])

# %% [markdown]
# ## A full pass, to a reconstruction
#
# Bottom-up, then top-down with a sample at every layer, then $p(x\mid z_0)$. The image
# shown is the likelihood's mean. Two passes over the same digits differ a little: the
# samples do.

# %%
torch.manual_seed(figures.SEED)
first, second = model(x[:12]).x_mean, model(x[:12]).x_mean
plots.image_rows({"data": x[:12], "pass 1": first, "pass 2": second})

# %% [markdown]
# ## Generation: the decoder alone, from N(0, T²I)
#
# `generate` never calls the encoder: the top latent is drawn from $\mathcal N(0, T^2 I)$
# and every layer below from the decoder's prior, each with its standard deviation scaled
# by the temperature $T$. The three panels use the same random draws, only scaled, so
# each sample can be followed across them as it is pulled towards the priors' means.

# %%
plots.image_grids({f"T = {t}": figures.samples(model, 36, t) for t in (0.5, 0.8, 1.0)}, nrow=6,
                  title="LVAE samples at three temperatures")
