"""Every plotting function on made-up data: it returns a Figure that shows what it says."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

matplotlib.use("Agg")

from lvae.report import plots  # noqa: E402
from lvae.latents import merge_gaussians  # noqa: E402


def texts(fig: Figure) -> str:
    """Every title, label, annotation and legend entry of a figure, as one string."""
    out = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *[t.get_text() for t in ax.texts]]
        out += [t.get_text() for t in ax.get_xticklabels()]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    return " | ".join(out)


def test_image_grid_tiles_images_in_reading_order_with_white_gutters():
    images = torch.rand(6, 1, 28, 28) * 0.9
    grid = plots.image_grid(images, nrow=3)
    assert grid.shape == (2 * 28 + 3 * 2, 3 * 28 + 4 * 2)
    for i, image in enumerate(images):  # image i in row i // 3, column i % 3, after the 2-pixel gutters
        top, left = 2 + 30 * (i // 3), 2 + 30 * (i % 3)
        assert np.array_equal(grid[top : top + 28, left : left + 28], image[0].numpy()), i
    assert (grid[:2] == 1.0).all() and (grid[:, 30:32] == 1.0).all()  # gutters white


def test_image_grids_and_rows_take_tensors_with_grad():
    x = torch.rand(8, 1, 28, 28, requires_grad=True)
    fig = plots.image_grids({"LVAE": x, "VAE": x.detach().numpy()}, nrow=4, title="samples")
    assert len(fig.axes) == 2 and "LVAE" in texts(fig) and "VAE" in texts(fig)
    for ax in fig.axes:  # each panel shows the images themselves
        assert np.array_equal(ax.images[0].get_array(), plots.image_grid(x.detach(), nrow=4))
    fig = plots.image_rows({"data": x[:5], "recon": x[:5]})
    assert [ax.get_ylabel() for ax in fig.axes] == ["data", "recon"]


def test_latent_maps_one_column_per_channel_with_symmetric_mean_colours():
    mu, logvar = torch.randn(4, 7, 7), torch.randn(4, 7, 7)
    fig = plots.latent_maps(mu, logvar)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 8
    lo, hi = images[0].get_clim()
    assert lo == pytest.approx(-hi) and hi == pytest.approx(mu.abs().max().item())
    with_input = plots.latent_maps(mu, logvar, image=torch.rand(1, 28, 28))
    assert sum(1 for ax in with_input.axes if ax.images) == 9 and "input" in texts(with_input)


def test_gaussian_merge_titles_give_the_encoder_weight():
    unit = {"mu_q": 1.0, "var_q": 1.0, "mu_p": -1.0, "var_p": 3.0}
    mu, logvar = merge_gaussians(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(-1.0), torch.tensor(math.log(3.0)))
    unit.update(mu=mu.item(), var=logvar.exp().item(), label="unit 7")
    fig = plots.gaussian_merge([unit, unit])
    assert "unit 7: weight of q̂ = 0.75" in texts(fig)
    assert len(fig.axes[0].lines) == 6  # three densities and their means


def test_merge_weights_curve_is_the_merge_itself():
    lq, lp = torch.randn(500), torch.randn(500)
    fig = plots.merge_weights(lq, lp)
    curve = fig.axes[1].lines[0]
    x, y = curve.get_xdata(), curve.get_ydata()
    assert np.allclose(y, 1 / (1 + np.exp(-x)), atol=1e-5)  # sigmoid of the log-variance gap
    colours = fig.axes[0].collections[0].get_array()
    assert np.allclose(colours, torch.sigmoid(lp - lq).numpy(), atol=1e-6)


def test_active_units_marks_deterministic_layers_and_fractions():
    fig = plots.active_units({"LVAE": [30, 4], "VAE": [None, 2]}, sizes=[60, 16])
    t = texts(fig)
    assert "30/60" in t and "4/16" in t and "2/16" in t and "det." in t
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights[:2] == [0.5, 0.25] and math.isnan(heights[2])


def test_class_histogram_bars_are_the_fractions():
    hist = {"LVAE": [0.1] * 10, "VAE": [0.5, 0.5] + [0.0] * 8}
    fig = plots.class_histogram(hist, {"LVAE": 100, "VAE": 100}, reference=[0.1] * 10)
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == [0.1] * 10 + [0.5, 0.5]
    assert "LVAE: 100" in texts(fig)


def test_top_latent_draws_the_prior_circles_and_one_density_per_unit():
    z, labels = torch.randn(400, 5), torch.randint(0, 10, (400,))
    fig = plots.top_latent({"LVAE": (z, labels), "VAE": (z, labels)})
    assert len(fig.axes) == 4
    density = fig.axes[2]
    assert len(density.lines) == 5 + 1  # one KDE per unit, then N(0, 1)
    assert "N(0, 1)" in texts(fig)


def test_beta_schedules_draw_each_curve_against_epochs():
    curves = {"a": [0.0] * 10 + [1.0] * 10, "b": [i / 19 for i in range(20)]}
    fig = plots.beta_schedules(curves, iterations_per_epoch=10)
    for line, beta in zip(fig.axes[0].lines, curves.values()):
        assert np.allclose(line.get_xdata(), np.arange(20) / 10) and list(line.get_ydata()) == beta
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == list(curves)


def test_active_units_two_ways_draws_every_seed_and_one_colour_per_model():
    counts = {"by covariance": {"LVAE + BN + WU": [[30, 4], [28, 6]], "VAE + BN + WU": [[60, 2], [58, 3]]},
              "by KL": {"LVAE + BN + WU": [[20, 4], [22, 5]], "VAE + BN + WU": [[30, 1], [31, 2]]}}
    fig = plots.active_units_two_ways(counts, sizes=[64, 8], title="t")
    left, right = fig.axes[:2]
    assert [ax.get_title() for ax in (left, right)] == ["by covariance", "by KL"]
    assert len(left.collections) == 4  # one dot per seed and model
    colours = {p.get_facecolor()[:3] for p in left.patches}
    assert len(colours) == 2 and plots.model_color("LVAE + BN + WU") == plots.model_color("LVAE")


def test_kl_unit_heatmaps_draw_the_top_layer_at_the_top_with_unit_counts():
    per_epoch = [[[0.5, 0.001, 0.2], [0.05, 0.0]] for _ in range(3)]  # (epochs, layers, units)
    fig = plots.kl_unit_heatmaps({"LVAE": per_epoch}, "t")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["z1: 1/2", "z0: 2/3"]
