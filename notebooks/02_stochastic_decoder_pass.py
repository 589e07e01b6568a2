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

from lvae.report import figures, plots
from lvae.experiments.runs import ROOT  # the repository: the notebooks run from notebooks/
from lvae.data import load_split
from lvae.latents import Gaussian, merge_gaussians
from lvae.losses import kl_per_layer
from lvae.model import LadderVAE
from lvae.weights import load_trained

torch.set_grad_enabled(False)  # inference only: no autograd graphs
SEED = 0  # every draw below starts from it, so the printed numbers are the same on every run
cfg, model = load_trained(ROOT / "results" / "seed-lvae.pt")  # the committed seed LVAE, in eval mode
test = load_split("mnist", "test", ROOT / "data")
x, labels = test.images[:64], test.labels[:64]  # (64, 1, 28, 28)

# %% [markdown]
# ## The pass, in the package's own lines
#
# This is the whole of `LadderVAE.top_down`. It takes the encoder's Gaussians from the
# bottom-up pass (notebook 01), samples the top, and walks down; each layer is kept as a
# `LatentSample`: the posterior `q`, the prior `p`, the draw `z` and the encoder's own `q_hat`.

# %%
figures.source(LadderVAE.top_down)

# %% [markdown]
# `posterior` forms $q(z_k\mid z_{k+1}, x)$. The ladder's own way, and the seed model's
# (`ladder_merge = "precision"`), is the last line: the precision-weighted merge of $\hat q$
# with a top-down Gaussian, which is the prior itself when inference shares the decoder's
# path (`merge_partner`; the paper code's setup gives inference a path of its own). The other
# two branches are the factor study's alternatives (`docs/fidelity.md`).

# %%
figures.source(LadderVAE.posterior)

# %% [markdown]
# The seed model has two layers, so below the top the loop runs once, for $k = 0$. One line
# at a time, on the 64 test digits, with the seed fixed so the same noise can be drawn again
# below. The top latent is drawn from the encoder's Gaussian with the reparameterisation
# trick, $z = \hat\mu + \hat\sigma\,\epsilon$; the decoder turns it into a prior over the
# spatial inner latent, of the inner latent's shape (`model.prior(0, z)` is
# `prior_heads[0](down[1](z))`); the prior and the encoder's Gaussian are merged, and $z_0$
# is drawn from the merge and decoded.

# %%
encoder = model.bottom_up(x)
torch.manual_seed(SEED)
top = encoder[-1]  # q̂(z_1 | x), also the top's posterior
z1 = top.sample()  # (64, 16)
p0, q_hat0 = model.prior(0, z1), encoder[0]  # p(z_0 | z_1) and q̂(z_0 | x), each (64, 8, 7, 7)
q0 = Gaussian(*merge_gaussians(q_hat0.mu, q_hat0.logvar, p0.mu, p0.logvar))  # q(z_0 | z_1, x)
z0 = q0.sample()  # (64, 8, 7, 7)
x_logits = model.decode(z0)  # (64, 1, 28, 28)
for name, g in {"encoder q_hat(z0|x)": q_hat0, "prior p(z0|z1)": p0, "merged q(z0|z1,x)": q0}.items():
    print(f"{name:>19}: mean variance {g.logvar.exp().mean():.3f}")
figures.layer_table(model, [p0, Gaussian.standard(z1)])  # the priors: p(z_0 | z_1), and N(0, I) at the top

# %% [markdown]
# `top_down` itself, with the same noise, gives exactly these numbers: its output holds
# the likelihood's logits and one `LatentSample` per layer, bottom first. The loss
# (notebook 03) charges each layer the KL of its posterior from its prior.

# %%
torch.manual_seed(SEED)
out = model.top_down(encoder)
assert torch.equal(out.x_logits, x_logits) and torch.equal(out.latents[0].z, z0) and torch.equal(out.latents[1].z, z1)
for s, kl in zip(out.latents, kl_per_layer(out)):
    print(f"layer {s.layer}: z {tuple(s.z.shape)}, KL(q || p) = {kl.mean():.2f} nats per image")

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
# The curves are the model's own numbers. `merge_gaussians` computes the merge in log
# space, with the encoder's weight as a sigmoid of the log-variance gap:

# %%
figures.source(merge_gaussians)

# %% [markdown]
# As a check, the merged variance is the inverse of the summed precisions, and its mean
# the precision-weighted average, for every unit:

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
torch.manual_seed(SEED)
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

# %% [markdown]
# ## What each layer holds
#
# Generation can also start half way down. `sample_below` takes a latent $z_k$ as given and
# draws every layer below it from the decoder's priors:

# %%
figures.source(model.sample_below)

# %% [markdown]
# Take one test digit, keep its posterior samples of the layers above $k$, and draw $z_k$
# and everything below it afresh: what stays the same across a row is what the kept layers
# hold. In this two-layer model the top latent keeps the digit's class and most of its
# style, and the spatial inner latent only redraws the stroke. Drag the slider to choose
# the layer (0 is the bottom), press *resample* for new draws. The paper's five-layer
# ladder, one row per layer, is `figures/paper_layers_resampled.png` (`make paper`, then `make figures`).

# %%
from lvae.report.widgets import LayerExplorer

LayerExplorer(model, test.images[:1])

# %% [markdown]
# Every row at once: `layer_resamples` keeps the digit's draws above each layer and redraws the rest
# (the figure `make figures` draws as `figures/layers_seed.png`).

# %%
figures.source(figures.layer_resamples)

# %%
plots.image_rows(figures.layer_resamples(model, test.images[:1]), title="What each layer holds: the seed LVAE")
