"""Every picture the notebooks and `make figures` draw.

Each function takes plain data (tensors, arrays, lists, run summaries) and returns a
matplotlib Figure; it never trains, loads or saves anything, so a figure can be
redrawn from cached numbers in milliseconds and tested on made-up data. Saving, dpi
and backend are the caller's job (`lvae.report.figures`). Distributions are drawn with seaborn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lvae.latents import merge_gaussians
from lvae.schedules import beta_curve

if TYPE_CHECKING:
    from lvae.experiments.runs import RunSummary

# One colour per model, per schedule, per layer, everywhere.
MODEL_COLORS = {"LVAE": "#1f77b4", "VAE": "#d62728", "top-latent VAE": "#d62728"}
STYLE = {"axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "font.size": 9,
         "axes.titlesize": 10, "legend.fontsize": 8, "legend.frameon": False}


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.0, 4.0), **kw: Any) -> tuple[Figure, Any]:
    """A new figure in the house style (not attached to pyplot's global state)."""
    with plt.rc_context(STYLE):
        fig = Figure(figsize=size, dpi=100, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def model_color(name: str, i: int = 0) -> str:
    """The model's one colour: the ladder blue and the VAE red in every figure, the seed's and the paper's models alike."""
    return MODEL_COLORS.get(name) or PAPER_COLORS.get(name) or f"C{i + 2}"


def layer_colors(n: int) -> list:
    """Bottom layer dark, top layer light: the same layer has the same colour in every figure."""
    return list(sns.color_palette("viridis", n))


def _np(values: Any) -> np.ndarray:
    """Tensors (with or without grad, on any device), lists and arrays -> a numpy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _as_images(images: Any) -> torch.Tensor:
    """(N, 1, H, W) or (N, H, W) in [0, 1], tensor or array -> (N, 1, H, W) float tensor."""
    t = torch.as_tensor(_np(images), dtype=torch.float32)
    return t.unsqueeze(1) if t.dim() == 3 else t


def image_grid(images: Any, nrow: int = 8) -> np.ndarray:
    """Tile images into one grey-scale array with white gutters (torchvision's make_grid)."""
    from torchvision.utils import make_grid

    return make_grid(_as_images(images), nrow=nrow, padding=2, pad_value=1.0)[0].numpy()


def _show_image(ax, img: np.ndarray, title: str | None = None) -> None:
    ax.imshow(img, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title)


# ----------------------------------------------------------------------------- images


def image_grids(grids: Mapping[str, Any], nrow: int = 8, title: str | None = None, panel_size: float = 3.2) -> Figure:
    """One tiled panel per entry, side by side: samples of several models, or temperatures."""
    fig, axes = _figure(1, len(grids), (panel_size * len(grids), panel_size + 0.4))
    for ax, (name, images) in zip(axes[0], grids.items()):
        _show_image(ax, image_grid(images, nrow), name)
    if title:
        fig.suptitle(title)
    return fig


def image_rows(rows: Mapping[str, Any], title: str | None = None) -> Figure:
    """One labelled row of images per entry, columns aligned: data and its reconstructions."""
    n = max(len(_as_images(v)) for v in rows.values())
    fig, axes = _figure(len(rows), 1, (0.62 * n + 0.8, 0.75 * len(rows) + 0.4))
    for ax, (name, images) in zip(axes[:, 0], rows.items()):
        _show_image(ax, image_grid(images, nrow=n))
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def latent_maps(mu: Any, logvar: Any, title: str | None = None, image: Any | None = None) -> Figure:
    """A spatial latent (C, H, W) of one image: mean and log-variance maps, one column per channel.

    `image` (optional, (1, H, W) or (H, W)) is drawn in a first column, for reference.
    """
    mu, logvar = _np(mu), _np(logvar)
    c = mu.shape[0]
    extra = int(image is not None)
    fig, axes = _figure(2, c + extra, (1.15 * (c + extra) + 1.2, 3.0))
    if extra:
        _show_image(axes[0, 0], _np(image).reshape(_np(image).shape[-2:]), "input")
        axes[1, 0].set_visible(False)
    for row, (name, maps, cmap) in enumerate((("μ̂", mu, "RdBu_r"), ("log σ̂²", logvar, "magma"))):
        lim = np.abs(maps).max() if cmap == "RdBu_r" else None
        vmin, vmax = (-lim, lim) if lim is not None else (maps.min(), maps.max())
        for j in range(c):
            ax = axes[row, j + extra]
            im = ax.imshow(maps[j], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
            if row == 0:
                ax.set_title(f"ch {j}")
        axes[row, extra].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
        fig.colorbar(im, ax=list(axes[row, extra:]), shrink=0.8, pad=0.01)
    if title:
        fig.suptitle(title)
    return fig


def dense_latent(mu: Any, logvar: Any, labels: Sequence[int] | None = None, title: str | None = None) -> Figure:
    """A dense latent over a batch: μ̂ and log σ̂², one row per image, one column per unit."""
    mu, logvar = _np(mu), _np(logvar)
    fig, axes = _figure(1, 2, (9.0, 0.22 * len(mu) + 1.6))
    ylabels = [str(int(v)) for v in labels] if labels is not None else False
    lim = float(np.abs(mu).max())
    sns.heatmap(mu, ax=axes[0, 0], cmap="RdBu_r", vmin=-lim, vmax=lim, yticklabels=ylabels, cbar_kws={"shrink": 0.8})
    sns.heatmap(logvar, ax=axes[0, 1], cmap="magma", yticklabels=ylabels, cbar_kws={"shrink": 0.8})
    for ax, name in zip(axes[0], ("μ̂", "log σ̂²")):
        ax.set(title=name, xlabel="unit", ylabel="digit of the image" if labels is not None else "image")
        ax.grid(False)
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- the merge


def _normal_pdf(x: np.ndarray, mu: float, var: float) -> np.ndarray:
    return np.exp(-0.5 * (x - mu) ** 2 / var) / np.sqrt(2 * np.pi * var)


def gaussian_merge(units: Sequence[Mapping[str, float]]) -> Figure:
    """For a few latent units: the encoder's q̂, the decoder's prior p, and their precision-weighted merge q.

    Each unit is a mapping with mu_q, var_q, mu_p, var_p, mu, var and an optional label;
    the panel title gives q̂'s weight in the merged mean, var_p / (var_q + var_p).
    """
    fig, axes = _figure(1, len(units), (3.2 * len(units), 3.0))
    styles = (("encoder q̂(z|x)", "mu_q", "var_q", "#2ca02c", "--"), ("decoder prior p(z|z above)", "mu_p", "var_p", "#9467bd", ":"),
              ("merged q(z|·)", "mu", "var", "k", "-"))
    for ax, u in zip(axes[0], units):
        sd = np.sqrt(max(u["var_q"], u["var_p"]))
        x = np.linspace(min(u["mu_q"], u["mu_p"]) - 3.5 * sd, max(u["mu_q"], u["mu_p"]) + 3.5 * sd, 400)
        for name, m, v, color, ls in styles:
            ax.plot(x, _normal_pdf(x, u[m], u[v]), color=color, ls=ls, lw=1.8, label=name)
            ax.axvline(u[m], color=color, ls=ls, lw=0.7, alpha=0.6)
        w = u["var_p"] / (u["var_q"] + u["var_p"])
        ax.set_title(f"{u.get('label', 'unit')}: weight of q̂ = {w:.2f}")
        ax.set_yticks([])
        ax.set_xlabel("z")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    return fig


def merge_weights(logvar_q: Any, logvar_p: Any) -> Figure:
    """How the merge splits the say between encoder and decoder, for every unit of a batch.

    Left: each unit's encoder log-variance against the decoder's, coloured by q̂'s weight
    in the merged mean; on the diagonal both have equal say. Right: that weight as a
    function of the log-variance gap (the curve is lvae.latents.merge_gaussians itself with
    μ̂ = 1, μ_p = 0, whose merged mean is exactly q̂'s weight), over where the units sit.
    """
    lq, lp = _np(logvar_q).ravel(), _np(logvar_p).ravel()
    gap = lp - lq
    w = 1.0 / (1.0 + np.exp(-gap))
    fig, axes = _figure(1, 2, (9.5, 3.8))
    ax = axes[0, 0]
    sc = ax.scatter(lq, lp, c=w, cmap="viridis", vmin=0, vmax=1, s=4, alpha=0.5, rasterized=True)
    lo, hi = float(min(lq.min(), lp.min())) - 0.3, float(max(lq.max(), lp.max())) + 0.3
    for wt, ls in ((0.5, "-"), (0.1, ":"), (0.9, ":")):
        off = np.log(wt / (1 - wt))  # weight wt where log σ_p² = log σ̂² + off
        ax.plot([lo, hi], [lo + off, hi + off], color="k", lw=0.9, ls=ls)
        x0 = float(np.clip(lo + 0.15 * (hi - lo) - min(off, 0.0), lo, hi))
        ax.annotate(f"w = {wt}", (x0, x0 + off), fontsize=7, ha="left", va="bottom", rotation=45, rotation_mode="anchor")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", xlabel=r"encoder $\log \hat\sigma^2$", ylabel=r"decoder prior $\log \sigma_p^2$")
    fig.colorbar(sc, ax=ax, label="weight of q̂ in the merged mean")
    ax2 = axes[0, 1]
    grid = torch.linspace(min(-6.0, float(gap.min()) - 0.5), max(6.0, float(gap.max()) + 0.5), 400)
    curve, _ = merge_gaussians(torch.ones_like(grid), torch.zeros_like(grid), torch.zeros_like(grid), grid)
    ax2.plot(grid.numpy(), curve.numpy(), color="k", lw=1.4, label="weight of q̂ = sigmoid(gap)")
    ax2.set(xlabel=r"$\log \sigma_p^2 - \log \hat\sigma^2$  (decoder less sure → right)", ylabel=r"weight of $\hat q$", ylim=(-0.02, 1.02))
    twin = ax2.twinx()
    sns.histplot(gap, bins=50, ax=twin, color="#1f77b4", alpha=0.35, stat="probability", label="units of the batch")
    twin.set_ylabel("fraction of units")
    twin.grid(False)
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    fig.legend(h1 + h2, l1 + l2, loc="outside lower center", ncol=2, frameon=False)  # below the axes: it covers no unit
    return fig


# ----------------------------------------------------------------------------- warm-up


def beta_schedules(curves: Mapping[str, Sequence[float]], iterations_per_epoch: int, highlight: str | None = None) -> Figure:
    """β at every iteration for each named schedule, the x-axis in epochs."""
    fig, axes = _figure(1, 1, (5.5, 3.0))
    ax = axes[0, 0]
    for i, (name, beta) in enumerate(curves.items()):
        x = np.arange(len(beta)) / iterations_per_epoch
        lw = 2.6 if name == highlight else 1.6
        ax.plot(x, beta, lw=lw, color=f"C{i}", label=name, drawstyle="steps-post")
    ax.set_xlabel("epoch")
    ax.set_ylabel("β (KL weight)")
    ax.legend()
    ax.set_title("KL warm-up schedules")
    return fig


def _epoch_axis(summary: "RunSummary") -> np.ndarray:
    return (np.asarray(summary.iteration) + 1) / summary.iterations_per_epoch


def warmup_effect(summaries: Mapping[str, "RunSummary"], highlight: str | None = None, extra_beta: Sequence[float] | None = None,
                  extra_label: str = "your schedule") -> Figure:
    """What each warm-up did: β, training reconstruction, KL per layer at the end, active units per epoch.

    `summaries` are runs of the same model that differ only in their β schedule.
    `extra_beta` (one value per iteration) adds a schedule that has no run (the slider's).
    """
    fig, axes = _figure(2, 2, (10.0, 6.4))
    (a_beta, a_recon), (a_kl, a_au) = axes
    names = list(summaries)
    for i, (name, s) in enumerate(summaries.items()):
        style = {"color": f"C{i}", "lw": 2.4 if name == highlight else 1.4, "alpha": 1.0 if highlight in (None, name) else 0.55}
        x = _epoch_axis(s)
        beta = beta_curve(s.schedule, s.iterations_per_epoch, s.run_config.train.epochs)
        a_beta.plot(np.arange(len(beta) + 1) / s.iterations_per_epoch, beta + beta[-1:], label=name, drawstyle="steps-post", **style)
        a_recon.plot(x, s.recon, label=name, **style)
        if s.active_units:
            a_au.plot(np.asarray(s.active_epochs) + 1, [sum(a) for a in s.active_units], marker="o", ms=3, label=name, **style)
    if extra_beta is not None:
        s0 = next(iter(summaries.values()))
        a_beta.plot(np.arange(len(extra_beta) + 1) / s0.iterations_per_epoch, list(extra_beta) + list(extra_beta[-1:]), color="k", ls="--", lw=1.8, label=extra_label)
    a_beta.set(title="β schedule", xlabel="epoch", ylabel="β")
    a_recon.set(title="reconstruction −log p(x|z) (training batches)", xlabel="epoch", ylabel="nats / image")
    lo, hi = np.nanpercentile(np.concatenate([np.asarray(s.recon) for s in summaries.values()]), [0.5, 97])
    a_recon.set_ylim(lo - 0.05 * (hi - lo), hi)
    total = sum(next(iter(summaries.values())).latent_sizes)
    a_au.axhline(total, color="0.5", lw=0.8, ls=":")
    a_au.annotate(f"all {total} units", (0.02, total), xycoords=("axes fraction", "data"), va="bottom", fontsize=7, color="0.4")
    a_au.set(title="active units, all layers (test images)", xlabel="epoch", ylabel="active units (Cov_x E_q[z_u] > 0.01)",
             ylim=(0, total * 1.08))
    a_beta.legend(), a_recon.legend()

    depth = len(next(iter(summaries.values())).latent_sizes)
    width = 0.8 / max(1, len(names))
    for i, (name, s) in enumerate(summaries.items()):
        final = np.maximum(s.epochs[-1]["kl"], 1e-3) if s.epochs else [np.nan] * depth
        xs = np.arange(depth) + (i - (len(names) - 1) / 2) * width
        a_kl.bar(xs, final, width, color=f"C{i}", label=name, alpha=1.0 if highlight in (None, name) else 0.55)
        for x, v in zip(xs, final):
            a_kl.annotate(f"{v:.1f}", (x, v), ha="center", va="bottom", fontsize=6)
    a_kl.set_xticks(range(depth), _layer_ticks(depth))
    a_kl.set(title="KL per layer at the end (test, nats)", ylabel="KL (nats)")
    a_kl.legend()
    return fig


# ----------------------------------------------------------------------------- LVAE vs VAE


def _layer_ticks(depth: int) -> list[str]:
    return [f"z{k}" + (" (top)" if k == depth - 1 else "") for k in range(depth)]


def _grouped_bars(ax, values: Mapping[str, Sequence[float | None]], labels: Mapping[str, Sequence[str]]) -> None:
    """One group of bars per layer, one bar per model, each annotated; None is a deterministic layer ('det.')."""
    depth = max(len(v) for v in values.values())
    width = 0.8 / len(values)
    for i, (name, vals) in enumerate(values.items()):
        xs = np.arange(len(vals)) + (i - (len(values) - 1) / 2) * width
        bars = ax.bar(xs, [np.nan if v is None else v for v in vals], width, color=model_color(name, i), label=name)
        for x, b, v, text in zip(xs, bars, vals, labels[name]):
            ax.annotate("det." if v is None else text, (x, 0 if v is None else b.get_height()), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(depth), _layer_ticks(depth))


def kl_per_layer(summaries: Mapping[str, "RunSummary"]) -> Figure:
    """KL of each layer: over training (training batches) and at the end (test set), per model.

    A top-latent VAE's lower layers are deterministic: no KL, no bar.
    """
    depth = max(len(s.latent_sizes) for s in summaries.values())
    fig, axes = _figure(1, len(summaries) + 1, (3.6 * (len(summaries) + 1), 3.3))
    colors = layer_colors(depth)
    for ax, (name, s) in zip(axes[0], summaries.items()):
        kl = np.asarray(s.kl)  # (rows, latent layers)
        for i, k in enumerate(s.latent_layers):
            ax.plot(_epoch_axis(s), np.maximum(kl[:, i], 1e-3), color=colors[k], lw=1.4, label=f"z{k}")
        ax.set_yscale("log")
        ax.set(title=f"{name}: KL per layer (training batches)", xlabel="epoch", ylabel="KL (nats, log scale)")
        ax.legend(title="layer")
    ax = axes[0, -1]  # the same colour code as the curves: one colour per layer, the models as groups of bars
    width = 0.8 / depth
    for m, (name, s) in enumerate(summaries.items()):
        final = s.per_rung(s.epochs[-1]["kl"])
        for k, v in enumerate(final):
            x = m + (k - (depth - 1) / 2) * width
            if v is None:
                ax.annotate("det.", (x, 0), ha="center", va="bottom", fontsize=7)
                continue
            ax.bar(x, v, width, color=colors[k])
            ax.annotate(f"{v:.1f}", (x, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(summaries)), list(summaries))
    ax.set(title="KL per layer at the end (test)", ylabel="KL (nats)")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k in range(depth)], labels=[f"z{k}" for k in range(depth)], title="layer")
    return fig


def _active_panel(ax, counts: Mapping[str, Sequence[int | None]], sizes: Sequence[int], threshold: float) -> None:
    fractions = {name: [None if v is None else v / n for v, n in zip(c, sizes)] for name, c in counts.items()}
    _grouped_bars(ax, fractions, {name: [f"{v}/{n}" for v, n in zip(c, sizes)] for name, c in counts.items()})
    ax.set(ylim=(0, 1.1), ylabel="fraction of the layer's units", title=f"Active units (Cov_x E_q[z_u] > {threshold})")


def active_units(counts: Mapping[str, Sequence[int | None]], sizes: Sequence[int], threshold: float = 0.01) -> Figure:
    """Active units per layer and model, as a fraction of the layer: Cov_x(E_q[z_u]) > threshold (Burda et al., 2016).

    `counts[model][k]` is None where the layer is deterministic (a top-latent VAE's lower layers).
    """
    fig, axes = _figure(1, 1, (1.6 * len(sizes) + 3.0, 3.2))
    _active_panel(axes[0, 0], counts, sizes, threshold)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def active_units_two_ways(counts: Mapping[str, Mapping[str, Sequence[Sequence[int]]]], sizes: Sequence[int], title: str,
                          notes: Mapping[str, str] | None = None) -> Figure:
    """Active units per layer counted two ways, one panel each (`counts[measure][model]` = one list per seed of
    per-layer counts): bars are the mean over seeds, as a fraction of the layer, dots the seeds, labels the mean count."""
    fig, axes = _figure(1, len(counts), (5.2 * len(counts) + 1.6, 3.8), sharey=True)
    depth = len(sizes)
    for ax, (measure, by_model) in zip(axes[0], counts.items()):
        width = 0.8 / len(by_model)
        for i, (name, seeds) in enumerate(by_model.items()):
            per_seed = np.asarray(seeds, dtype=float) / np.asarray(sizes)  # (seeds, layers)
            xs = np.arange(depth) + (i - (len(by_model) - 1) / 2) * width
            ax.bar(xs, per_seed.mean(0), width, color=model_color(name, i), alpha=0.85, label=f"{name} ({len(seeds)} seeds)")
            for row in per_seed:
                ax.scatter(xs, row, s=9, color="k", zorder=3, linewidths=0)
            for x, mean_count, frac in zip(xs, np.asarray(seeds, dtype=float).mean(0), per_seed.max(0)):
                ax.annotate(f"{mean_count:.1f}", (x, frac), ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(depth), [f"z{k} ({n})" + (" top" if k == depth - 1 else "") for k, n in enumerate(sizes)])
        ax.set(ylim=(0, 1.15), title=measure)
        if notes and measure in notes:
            ax.set_xlabel(notes[measure], fontsize=7)
    axes[0, 0].set_ylabel("fraction of the layer's units active")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
    fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- the paper's figures


PAPER_COLORS = {"VAE": "#7f7f7f", "VAE + BN": "#ff7f0e", "VAE + BN + WU": "#d62728", "LVAE + BN + WU": "#1f77b4"}


def nll_vs_depth(points: Mapping[str, Mapping[int, tuple[float, float, int]]], title: str) -> Figure:
    """The paper's figure 3: test NLL (IW bound) against the number of stochastic layers.

    `points[variant][depth] = (mean NLL over seeds, 95 % half-width, seeds)`; a missing depth is not
    drawn. Lower is better and the axis says so: it is not flipped.
    """
    fig, axes = _figure(1, 1, (6.4, 4.2))
    ax = axes[0, 0]
    for i, (label, by_depth) in enumerate(points.items()):
        depths = sorted(by_depth)
        nll = [by_depth[d][0] for d in depths]
        err = [by_depth[d][1] for d in depths]
        offset = 0.06 * (i - (len(points) - 1) / 2)  # side by side, so one model's bars do not hide another's
        ax.errorbar(np.array(depths) + offset, nll, yerr=err, marker="o", ms=4, capsize=2, lw=1.4,
                    color=PAPER_COLORS.get(label, f"C{i}"), label=label)
    ax.set(xlabel="stochastic layers", ylabel="test NLL (nats, IW bound; lower is better)", title=title, xticks=[1, 2, 3, 4, 5],
           xlim=(0.6, 5.4))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def budget_curve(epochs: Sequence[int], nll: Sequence[tuple[float, float, float]], elbo: Sequence[tuple[float, float, float]],
                 title: str) -> Figure:
    """The ladder-minus-VAE difference against training epochs (log axis): NLL on the left, -ELBO on the
    right, each a (mean, low, high) over seeds with its seed-aware 95 % band. Below zero: the ladder is better."""
    fig, axes = _figure(1, 2, (10.0, 3.8), sharex=True)
    for ax, series, what in ((axes[0, 0], nll, "NLL"), (axes[0, 1], elbo, "−ELBO")):
        mean, low, high = (np.array([p[j] for p in series]) for j in range(3))
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.fill_between(epochs, low, high, color=PAPER_COLORS["LVAE + BN + WU"], alpha=0.25, lw=0, label="95 % interval")
        ax.plot(epochs, mean, marker="o", ms=4, color=PAPER_COLORS["LVAE + BN + WU"], label="mean (over seeds)")
        ax.set(xscale="log", xlabel="training epochs (log scale)", ylabel=f"{what}(LVAE) − {what}(VAE), nats",
               title=f"{what}: below 0, the ladder is better")
        ax.set_xticks(list(epochs), [str(e) for e in epochs])
        ax.set_xticks([], minor=True)  # the log axis's own minor labels (3 x 10^1, ...) would crowd the kept epochs
    axes[0, 0].legend(loc="best", frameon=False)
    fig.suptitle(title)
    return fig


def elbo_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str, zoom_from: int = 20, note: str | None = None) -> Figure:
    """Train and test ELBO per epoch, one colour per model (`curves[model] = {"train": [...], "test": [...]}`): every
    epoch on the left, from epoch `zoom_from` on (after the warm-up's climb) on the right; `note` below says why
    the curves sit where they do."""
    import textwrap

    fig, axes = _figure(1, 2, (11.0, 4.6))
    epochs = max(len(c["train"]) for c in curves.values())
    zoom_from = zoom_from if epochs > 2 * zoom_from else epochs // 2 + 1  # a short run: zoom on its second half
    for ax, first in ((axes[0, 0], 1), (axes[0, 1], zoom_from)):
        shown = []
        sign = -1 if first == 1 else 1  # every epoch: −ELBO on a log axis, so the first epochs and the last fit in one panel
        for i, (label, c) in enumerate(curves.items()):
            color = model_color(label, i)
            train = [(e, sign * v) for e, v in enumerate(c["train"], 1) if e >= first]
            tested = [(e, sign * v) for e, v in enumerate(c["test"], 1) if v is not None and e >= first]  # None: no test pass
            ax.plot(*zip(*train), color=color, lw=1.2, ls="--", label=f"{label}, train")
            ax.plot(*zip(*tested), color=color, lw=1.6, label=f"{label}, test")
            shown += [v for _, v in train] + [v for _, v in tested]
        if first == 1:
            ax.set(yscale="log", xlabel="epoch", ylabel="−ELBO (nats, log scale; lower is better)", title="every epoch")
        else:
            lo, hi = min(shown), max(shown)
            ax.set_ylim(lo - 0.03 * (hi - lo), hi + 0.05 * (hi - lo))
            ax.set(xlabel="epoch", ylabel="ELBO (nats; higher is better)", title=f"from epoch {first} on (after the warm-up's climb)")
    axes[0, 1].legend(loc="lower right", frameon=False)
    fig.suptitle(title)
    if note:
        fig.supxlabel(textwrap.fill(note, 170), fontsize=8)
    return fig


def kl_unit_heatmaps(kl_units: Mapping[str, Sequence[Sequence[Sequence[float]]]], title: str, threshold: float = 0.01,
                     clip: tuple[float, float] = (1e-3, 10.0)) -> Figure:
    """log10 of each latent unit's test KL (rows, sorted within each layer by the final KL) against epochs.

    `kl_units[model][epoch][layer][unit]`; the top layer is drawn at the top, white lines separate the layers, and
    each layer's label gives its units and how many end above `threshold` nats. Colours are clipped to `clip`.
    """
    fig, axes = _figure(1, len(kl_units), (4.6 * len(kl_units) + 1.2, 4.8))
    image = None
    lo, hi = np.log10(clip[0]), np.log10(clip[1])
    for ax, (label, per_epoch) in zip(axes[0], kl_units.items()):
        rows, edges, names = [], [0], []
        for k in reversed(range(len(per_epoch[0]))):  # top layer first: it is drawn at the top
            layer = np.array([epoch[k] for epoch in per_epoch]).T  # (units, epochs)
            rows.append(layer[np.argsort(-layer[:, -1])])
            edges.append(edges[-1] + len(layer))
            names.append(f"z{k}: {int((layer[:, -1] > threshold).sum())}/{len(layer)}")
        grid = np.log10(np.clip(np.concatenate(rows), clip[0], clip[1]))
        image = ax.imshow(grid, aspect="auto", cmap="magma", vmin=lo, vmax=hi, interpolation="nearest",
                          extent=(0.5, grid.shape[1] + 0.5, grid.shape[0], 0))
        for e in edges[1:-1]:
            ax.axhline(e, color="white", lw=1)
        ax.set_yticks([(a + b) / 2 for a, b in zip(edges, edges[1:])], names)
        ax.grid(False)
        ax.set(xlabel="epoch", title=label)
    axes[0, 0].set_ylabel(f"units, sorted by final KL (label: units above {threshold} nats at the end / all)")
    fig.colorbar(image, ax=axes[0, -1], label=f"log10 KL per unit (nats), test set; clipped to [{clip[0]:g}, {clip[1]:g}]")
    fig.suptitle(title)
    return fig


def posterior_pca(pcas: Mapping[str, Mapping[str, Any]], title: str) -> Figure:
    """Rows: models; columns: layers. Each panel: one posterior sample per test digit, first two
    principal components, coloured by digit (`pcas[model] = {"labels": [...], "layers": [{"coords", ...}]}`)."""
    ncols = max(len(p["layers"]) for p in pcas.values())
    fig, axes = _figure(len(pcas), ncols, (2.3 * ncols + 1.2, 2.3 * len(pcas)))
    palette = sns.color_palette("tab10", 10)
    for r, (label, pca) in enumerate(pcas.items()):
        colors = [palette[y] for y in pca["labels"]]
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(pca["layers"]):
                ax.set_visible(False)
                continue
            layer = pca["layers"][c]
            xy = np.asarray(layer["coords"])
            ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=2, alpha=0.6, linewidths=0)
            ax.set_title(f"{label}: z{layer['layer']} ({100 * sum(layer['explained_variance']):.0f}% var.)", fontsize=8)
    handles = [Line2D([], [], marker="o", ls="", color=palette[d], label=str(d)) for d in range(10)]
    fig.legend(handles=handles, loc="outside right center", title="digit")
    fig.suptitle(title)
    return fig


def top_latent(codes: Mapping[str, tuple[Any, Any]], dims: Mapping[str, tuple[int, int]] | None = None, max_points: int = 3000) -> Figure:
    """The top latent z_top ~ q(z_top|x) over test images against N(0, I), coloured by digit.

    Row 1: two coordinates of z_top per model (by default the two with the largest variance),
    with the 1σ and 2σ circles of N(0, I). A prior-matching code fills the disc with
    all digits mixed; separated class islands leave holes that prior samples fall into.
    Row 2: every coordinate's marginal density against N(0, 1).
    """
    fig, axes = _figure(2, len(codes), (4.3 * len(codes) + 1.8, 7.6), gridspec_kw={"height_ratios": [3, 1.6]})
    for j, (name, (z, labels)) in enumerate(codes.items()):
        z, labels = _np(z), _np(labels)
        a, b = (dims or {}).get(name) or tuple(np.argsort(-np.var(z, axis=0))[:2])
        keep = np.random.default_rng(0).permutation(len(z))[:max_points]
        ax = axes[0, j]
        sns.scatterplot(x=z[keep, a], y=z[keep, b], hue=labels[keep].astype(int), palette="tab10", s=6, alpha=0.7, linewidth=0, ax=ax,
                        legend=(j == len(codes) - 1), rasterized=True)
        t = np.linspace(0, 2 * np.pi, 200)
        for r in (1, 2):
            ax.plot(r * np.cos(t), r * np.sin(t), color="k", lw=0.8, ls="--" if r == 2 else "-")
        lim = max(3.2, float(np.percentile(np.abs(z[:, [a, b]]), 99.5)))
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel=f"z_top[{a}]", ylabel=f"z_top[{b}]", title=f"{name}: z_top, two widest coordinates")
        if j == len(codes) - 1:
            handles, labels_ = ax.get_legend_handles_labels()
            ax.get_legend().remove()
            rings = [Line2D([], [], color="k", lw=0.8, label="1σ circle of N(0, I)"),
                     Line2D([], [], color="k", lw=0.8, ls="--", label="2σ circle of N(0, I)")]
            fig.legend(handles=handles + rings, labels=[f"digit {d}" for d in labels_] + [h.get_label() for h in rings],
                       loc="outside right upper", markerscale=2)
        ax2 = axes[1, j]
        x = np.linspace(-4, 4, 300)
        for u in range(z.shape[1]):
            sns.kdeplot(x=z[:, u], ax=ax2, color=model_color(name, j), lw=0.7, alpha=0.5)
        ax2.plot(x, _normal_pdf(x, 0.0, 1.0), color="k", lw=1.8, ls="--")
        ax2.set(xlim=(-4, 4), xlabel="z_top[u], every unit", ylabel="density", title=f"{name}: each unit vs N(0, 1)")
        ax2.legend(handles=[Line2D([], [], color=model_color(name, j), lw=1, label="one unit"), Line2D([], [], color="k", ls="--", label="N(0, 1)")])
    return fig


def class_histogram(histograms: Mapping[str, Sequence[float]], samples: Mapping[str, int] | None = None,
                    reference: Sequence[float] | None = None) -> Figure:
    """Which digits each model's prior samples are, by a classifier: a model that drops digits shows gaps.

    `histograms[model]` is the fraction of samples per class (sums to 1); `reference`
    (optional) the test set's own class frequencies.
    """
    import pandas as pd

    n_classes = len(next(iter(histograms.values())))
    df = pd.DataFrame([(name, c, float(f)) for name, h in histograms.items() for c, f in enumerate(h)], columns=["model", "digit", "fraction"])
    fig, axes = _figure(1, 1, (8.5, 3.4))
    ax = axes[0, 0]
    palette = {name: model_color(name, i) for i, name in enumerate(histograms)}
    sns.barplot(data=df, x="digit", y="fraction", hue="model", palette=palette, ax=ax)
    if reference is not None:
        ax.scatter(range(n_classes), reference, marker="_", s=300, color="k", zorder=3, label="test set")
    ax.axhline(1 / n_classes, color="gray", lw=0.8, ls=":")
    counts = f" ({', '.join(f'{k}: {v}' for k, v in samples.items())} samples)" if samples else ""
    ax.set(title=f"Classes of samples from the prior{counts}", ylabel="fraction of samples")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars, not over them
    return fig


def likelihood_curves(summaries: Mapping[str, "RunSummary"], iw: Mapping[str, float] | None = None, iw_label: str = "IW bound",
                      likelihood: str | None = None) -> Figure:
    """The ELBO over training per model: on training batches (line) and on the test set after each epoch
    (dots; paper KL, β = 1), with final importance-weighted estimates (stars) where given."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(1, 1, (8.5, 3.8))
    ax = axes[0, 0]
    lows = []
    for i, (name, s) in enumerate(summaries.items()):
        color = model_color(name, i)
        train = -(np.asarray(s.recon) + np.asarray(s.kl).sum(1))
        ax.plot(_epoch_axis(s), train, color=color, lw=1.0, alpha=0.45, label=f"{name} ELBO, training batches")
        tested = [r for r in s.epochs if "elbo" in r]  # epochs whose test pass ran (train.test_every)
        ep = [r["epoch"] + 1 for r in tested]
        test = [r["elbo"] for r in tested]
        ax.plot(ep, test, marker="o", ms=5, color=color, lw=1.6, label=f"{name} ELBO, test set")
        lows.append(min(test))
        if iw and name in iw:  # each model's star a little to the side of the last epoch, so one never hides another
            x = ep[-1] + 0.15 * (i - (len(summaries) - 1) / 2)
            ax.scatter([x], [iw[name]], marker="*", s=140, color=color, zorder=3, edgecolor="k", lw=0.5, label=f"{name} {iw_label}")
    top = max(max(r["elbo"] for r in s.epochs if "elbo" in r) for s in summaries.values())
    if iw:
        top = max(top, *iw.values())
    span = top - min(lows)
    ax.set_ylim(min(lows) - 1.5 * span, top + 0.3 * span)  # the first iterations' bound is far lower: keep the epochs in view
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    what = {"gaussian": "a Gaussian (MSE) density of the grey levels: its nats are not comparable with the paper's Bernoulli ≈ −82",
            "bernoulli": "the Bernoulli likelihood of binarized digits"}.get(likelihood or "", "")
    ax.set(xlabel="epoch", ylabel="nats / image (higher is better)")
    fig.suptitle("Log-likelihood bound over training" + (f"\n{what}" if what else ""), fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig
