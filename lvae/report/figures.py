"""`python -m lvae.report.figures`: every PNG in figures/, drawn from the runs `lvae.experiments.runs` provides.

This module decides what each figure shows and draws it with `lvae.report.plots`; `lvae.experiments.runs`
finds, trains and digests the runs behind it (see there for where the numbers come from).
The notebooks use the same functions, so a notebook cell and its PNG are the same picture.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from lvae import checkpoint as ckpt
from lvae.report import plots
from lvae.config import ConfigError
from lvae.data import DataError
from lvae.model import HierarchicalModel, LadderVAE
from lvae.experiments.runs import HEADLINE, ROOT, SEED, Results, RunSummary, duration, shown
from lvae.schedules import beta_curve

DPI = 150
FIGURES_DIR = ROOT / "figures"


# ----------------------------------------------------------------------------- what the figures show


@torch.no_grad()
def top_latent_codes(model: HierarchicalModel, x: torch.Tensor, seed: int = SEED) -> torch.Tensor:
    """One draw z_top ~ q(z_top | x) per image: (N, D), samples of the aggregate posterior."""
    torch.manual_seed(seed)
    return model(x).latents[-1].z.flatten(1)


@torch.no_grad()
def samples(model: HierarchicalModel, n: int = 64, temperature: float = 1.0, seed: int = SEED) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.generate(n, temperature)


@torch.no_grad()
def layer_resamples(model: HierarchicalModel, x: torch.Tensor, n: int = 10, seed: int = SEED) -> dict[str, torch.Tensor]:
    """What each layer holds, for one digit `x` (1, C, H, W): one row per stochastic layer k, top
    first, with the digit's posterior sample of every layer above k kept and z_k and everything
    below it drawn afresh from the priors; each row starts with the digit itself. The top row
    keeps nothing (prior samples); the bottom row keeps all but z_0."""
    torch.manual_seed(seed)
    above = {layer.layer: layer.z for layer in model(x[:1]).latents}
    rows = {}
    for k in reversed(model.latent_layers):
        drawn = f"z{k} … z0" if k else "z0"
        if k == model.depth - 1:
            images, label = model.generate(n), "all drawn from the prior"
        else:
            z = above[k + 1].expand(n, *above[k + 1].shape[1:])
            images, label = model.sample_below(z, k + 1), f"{drawn} drawn, z{k + 1} … kept"
        rows[label] = torch.cat([x[:1], images])
    return rows


@torch.no_grad()
def reconstructions(model: HierarchicalModel, x: torch.Tensor, seed: int = SEED) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.reconstruct(x)


@torch.no_grad()
def merge_view(model: HierarchicalModel, x: torch.Tensor, layer: int = 0, seed: int = SEED) -> dict[str, torch.Tensor]:
    """Encoder, decoder prior and merged Gaussians of `layer` for a batch, flattened to (B, D) each."""
    torch.manual_seed(seed)
    out = model(x)
    if not isinstance(model, LadderVAE) or not 0 <= layer < model.depth - 1:
        raise ConfigError(f"layer {layer} has no merge: choose a ladder layer below the top (0..{model.depth - 2})")
    q_hat, p, q = out.latents[layer].q_hat, out.latents[layer].p, out.latents[layer].q
    flat = lambda t: t.flatten(1)  # noqa: E731
    return {"mu_q": flat(q_hat.mu), "logvar_q": flat(q_hat.logvar), "mu_p": flat(p.mu), "logvar_p": flat(p.logvar),
            "mu": flat(q.mu), "logvar": flat(q.logvar)}


def illustrative_units(view: dict[str, torch.Tensor], image: int = 0, weights: tuple[float, ...] = (0.95, 0.5, 0.05)) -> list[dict[str, float]]:
    """Units of one image whose encoder weight is nearest each target: encoder-led, balanced, prior-led."""
    w = torch.sigmoid(view["logvar_p"][image] - view["logvar_q"][image])
    chosen = []
    for target in weights:
        order = torch.argsort((w - target).abs())
        u = int(next(i for i in order.tolist() if i not in chosen))
        chosen.append(u)
    units = []
    for u in chosen:
        g = {k: float(view[k][image, u]) for k in view}
        units.append({"mu_q": g["mu_q"], "var_q": math.exp(g["logvar_q"]), "mu_p": g["mu_p"], "var_p": math.exp(g["logvar_p"]),
                      "mu": g["mu"], "var": math.exp(g["logvar"]), "label": f"unit {u}"})
    return units


def class_histograms(models: dict[str, HierarchicalModel], n: int, seed: int = SEED) -> dict[str, list[float]]:
    """Fraction of `n` prior samples per digit, by the shipped classifier (lvae.classifier)."""
    from lvae.classifier import class_histogram, load_classifier, predict

    judge = load_classifier()
    return {name: class_histogram(predict(judge, samples(m, n, seed=seed))).tolist() for name, m in models.items()}


def layer_table(model: HierarchicalModel, gaussians: list[Any]) -> "Any":
    """One row per layer (bottom first): kind, latent shape, units, and the Gaussians' average μ and σ².

    `gaussians` is any per-layer list of a pass (`bottom_up`, `.priors`, `.posteriors`); None rows
    are deterministic layers.
    """
    import pandas as pd

    rows = []
    for k, (spec, shape, g) in enumerate(zip(model.config.layers, model.latent_shapes, gaussians)):
        row = {"layer": f"z{k}" + (" (top)" if k == model.depth - 1 else ""), "rung": spec.kind, "latent shape": tuple(shape),
               "units": math.prod(shape)}
        if g is None:
            row.update({"mean μ": None, "mean σ²": None, "stored as": "deterministic"})
        else:
            row.update({"mean μ": round(float(g.mu.mean()), 3), "mean σ²": round(float(g.logvar.exp().mean()), 3),
                        "stored as": f"μ, log σ² of shape {tuple(g.mu.shape)}"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


def source(obj: Any) -> "Any":
    """The package's own code of `obj` (a function, method or class), shown as a code block in a notebook.

    The notebooks teach the model by showing the lines they explain and then running them on
    real numbers; taking those lines from the package, never pasting a copy, keeps the page
    and the tested code one and the same.
    """
    import inspect
    import textwrap

    from IPython.display import Code

    return Code(textwrap.dedent(inspect.getsource(obj)), language="python")


def summary_table(summaries: dict[str, RunSummary]) -> "Any":
    """One row per run: the final test ELBO terms, KL and active units per layer (bottom first)."""
    import pandas as pd

    rows = []
    for name, s in summaries.items():
        last = s.epochs[-1]
        active = s.active_units[-1] if s.active_units else []
        rows.append({"run": name, "test ELBO": round(last["elbo"], 2), "recon": round(last["recon"], 2),
                     "KL per layer": [round(k, 2) for k in last["kl"]],
                     "active units": [f"{a}/{n}" if a is not None else "det." for a, n in zip(s.per_rung(active), s.latent_sizes)]})
    return pd.DataFrame(rows).set_index("run")


# ----------------------------------------------------------------------------- the figures


def fig_samples(r: Results) -> Figure:
    grids = {name: samples(m, 64) for name, m in r.headline_models.items()}
    return plots.image_grids(grids, nrow=8, title="Samples from the prior N(0, I), temperature 1")


def fig_reconstructions(r: Results) -> Figure:
    x = r.data.test.images[:12]
    rows = {"data": x, **{name: reconstructions(m, x) for name, m in r.headline_models.items()}}
    return plots.image_rows(rows, title="Test digits and their reconstructions (mean of p(x|z))")


def fig_top_latent(r: Results) -> Figure:
    split = r.data.eval_split()
    codes = {name: (top_latent_codes(m, split.images), split.labels) for name, m in r.headline_models.items()}
    return plots.top_latent(codes)


def fig_class_histogram(r: Results) -> Figure:
    metrics = r.headline_metrics()
    if len(metrics) == len(HEADLINE) and all("class_histogram" in m for m in metrics.values()):
        hists = {k: m["class_histogram"] for k, m in metrics.items()}
        counts = {k: m["prior_samples"] for k, m in metrics.items()}
    else:
        n = r.budget.prior_samples
        hists, counts = class_histograms(r.headline_models, n), {k: n for k in HEADLINE}
    ref = torch.bincount(r.data.test.labels, minlength=10).double() / len(r.data.test)
    return plots.class_histogram(hists, counts, ref.tolist())


def fig_kl_per_layer(r: Results) -> Figure:
    return plots.kl_per_layer(r.headline_summaries)


def fig_active_units(r: Results) -> Figure:
    summaries = r.headline_summaries
    counts = {}
    for name, s in summaries.items():
        counts[name] = s.per_rung(s.active_units[-1])
    sizes = next(iter(summaries.values())).latent_sizes
    return plots.active_units(counts, sizes)


def fig_likelihood(r: Results) -> Figure:
    metrics = r.headline_metrics()
    iw = {k: -m["nll"] for k, m in metrics.items() if "nll" in m}
    k = next((m["iw_samples"] for m in metrics.values() if "iw_samples" in m), None)
    kinds = {s.run_config.model.likelihood for s in r.headline_summaries.values()}
    return plots.likelihood_curves(r.headline_summaries, iw or None, f"IW bound, K={k}" if k else "IW bound",
                                   kinds.pop() if len(kinds) == 1 else None)


def fig_warmup_schedules(r: Results) -> Figure:
    s = r.warmup_summaries
    ipe = next(iter(s.values())).iterations_per_epoch
    epochs = r.budget.warmup_epochs
    curves = {name: beta_curve(v.schedule, ipe, epochs) for name, v in s.items()}
    return plots.beta_schedules(curves, ipe)


def fig_warmup_effect(r: Results) -> Figure:
    return plots.warmup_effect(r.warmup_summaries)


def fig_encoder_maps(r: Results) -> Figure:
    model = r.headline_model("LVAE")
    with torch.no_grad():
        x = r.data.test.images[:1]
        g = model.bottom_up(x)[0]
    return plots.latent_maps(g.mu[0], g.logvar[0], image=x[0], title="Bottom-up pass: the spatial latent q̂(z₀|x) of one test digit")


def fig_merge(r: Results) -> Figure:
    view = merge_view(r.headline_model("LVAE"), r.data.test.images[:1])
    return plots.gaussian_merge(illustrative_units(view))


def fig_merge_weights(r: Results) -> Figure:
    view = merge_view(r.headline_model("LVAE"), r.data.test.images[:64])
    return plots.merge_weights(view["logvar_q"], view["logvar_p"])


def fig_temperature(r: Results) -> Figure:
    model = r.headline_model("LVAE")
    return plots.image_grids({f"T = {t}": samples(model, 36, t) for t in (0.5, 0.8, 1.0)}, nrow=6,
                             title="LVAE samples at three temperatures (the same draws, every prior's σ scaled by T)\n"
                                   "T = 0.5 looks blurrier: each layer stays near its prior mean, where the decoder's "
                                   "mean image averages many digits")


class SkipFigure(Exception):
    """A figure whose data come only from long runs that are not there (the message says which)."""


def _paper_pair(r: Results) -> tuple[dict[str, dict[str, Any]], str]:
    from lvae.experiments import paper

    pair, what = paper.comparison_pair(paper.load_results(r.results_dir / "paper"))
    if not pair:
        raise SkipFigure(f"needs the 5-layer VAE and LVAE in {shown(r.results_dir / 'paper')} (make paper)")
    return pair, what


def fig_paper_depth(r: Results) -> Figure:
    from lvae.experiments import paper

    points = paper.depth_points(paper.load_results(r.results_dir / "paper"))
    if not points:
        raise SkipFigure(f"needs depth-sweep results in {shown(r.results_dir / 'paper')} (make paper)")
    runs = sum(n for p in points.values() for _, _, n in p.values())
    total = len(paper.DEPTHS) * len(paper.VARIANTS) * len(paper.SEEDS)
    status = "" if runs == total else f"\npartial: {runs} of {total} runs"
    return plots.nll_vs_depth(points, f"Test NLL against depth\n{paper.SWEEP.epochs} epochs, K = {paper.SWEEP.iw_samples}; "
                                      f"mean and 95 % interval over seeds{status}")


def fig_paper_budget(r: Results) -> Figure:
    from lvae.experiments import claims, paper

    effects = claims.budget_effects(paper.load_results(r.results_dir / "paper"))
    if not effects:
        raise SkipFigure(f"needs the long pair in {shown(r.results_dir / 'paper')} (make paper)")
    epochs = sorted(effects)
    seeds = min(n.seeds for n, _ in effects.values())
    seeds_text = f"{seeds} seed{'s' * (seeds != 1)}"
    band = lambda e: (e.mean, e.low, e.high)  # noqa: E731
    bands = "95 % bands from the spread of the per-seed means" if seeds > 1 else "95 % bands over test images only (one seed)"
    partial = f"; partial: {seeds} of {len(paper.SEEDS)} seeds" if seeds < len(paper.SEEDS) else ""
    return plots.budget_curve(epochs, [band(effects[e][0]) for e in epochs], [band(effects[e][1]) for e in epochs],
                              f"The 5-layer ladder minus the VAE (both BN + WU) against training budget, {seeds_text}, "
                              f"K = {paper.LONG.iw_samples}\n{bands}{partial}")


def fig_paper_elbo(r: Results) -> Figure:
    pair, what = _paper_pair(r)
    curves = {label: {"train": m["per_epoch"]["train_elbo"], "test": m["per_epoch"]["elbo"]} for label, m in pair.items()}
    return plots.elbo_curves(curves, f"Train and test ELBO per epoch, {what}", note=(
        "Test lies above train: the train ELBO is the mean over the epoch's batches in training mode (dropout on, each batch's "
        "own batch-norm statistics, images binarized afresh each time), the test ELBO is scored after the epoch in eval mode "
        "(no dropout, batch-norm statistics recomputed on the training set)."))


def fig_paper_kl_units(r: Results) -> Figure:
    pair, what = _paper_pair(r)
    return plots.kl_unit_heatmaps({label: m["per_epoch"]["kl_units"] for label, m in pair.items()}, f"KL per latent unit, {what}")


def fig_paper_active_units(r: Results) -> Figure:
    pair, what = _paper_pair(r)
    from lvae.experiments import claims, paper

    arms = paper.arms(paper.load_results(r.results_dir / "paper"))
    runs = {paper.VARIANTS[v].label: arms.get(("long", v, 5), {}) for v in paper.PAIR}
    if not all(runs.values()):
        raise SkipFigure(f"needs the long pair in {shown(r.results_dir / 'paper')} (make paper)")
    sizes = next(iter(next(iter(runs.values())).values()))["latent_units"]
    epochs = next(iter(next(iter(runs.values())).values()))["epochs"]
    counts = {"by covariance: Cov_x E_q[z_u] > 0.01": {m: [claims.cov_active_units(x) for x in rs.values()] for m, rs in runs.items()},
              f"by KL: KL_u > {claims.KL_ACTIVE} nats": {m: [claims.kl_active_units(x) for x in rs.values()] for m, rs in runs.items()}}
    notes = dict(zip(counts, ("a unit whose posterior mean moves with x; counts one that copies the layer above",
                              "a unit that carries information about x itself (KL averaged over the test images)")))
    return plots.active_units_two_ways(counts, sizes, f"Active units per layer, 5 layers, {epochs} epochs, every seed of the long pair "
                                                      "(bars: mean, dots: seeds)", notes)


def fig_paper_pca(r: Results) -> Figure:
    pair, what = _paper_pair(r)
    return plots.posterior_pca({label: m["pca"] for label, m in pair.items()},
                               f"One posterior sample per test digit, first two principal components, {what}")


def _layer_figure(model: HierarchicalModel, r: Results, title: str) -> Figure:
    x = r.data.test.images[:1]  # a 7
    return plots.image_rows(layer_resamples(model, x), title=title)


def fig_layers_seed(r: Results) -> Figure:
    return _layer_figure(r.headline_model("LVAE"), r, "What each layer holds: the seed LVAE\n"
                                                      "the digit, then its upper layers kept and the rest drawn")


def fig_layers_paper(r: Results) -> Figure:
    from lvae.results import load_model

    # the long seed-0 ladder once `make paper` has trained it; until then the first setup's 100-epoch ladder, said so
    candidates = ((r.results_dir / "paper" / "long-lvae-bn-wu-s0.pt", ""),
                  (r.results_dir / "paper-v1" / "headline-lvae-bn-wu.pt", ", the first setup (results/paper-v1)"))
    found = next(((p, note) for p, note in candidates if p.is_file()), None)
    if found is None:
        raise SkipFigure(f"needs the 5-layer ladder's weights in {shown(r.results_dir / 'paper')} (make paper)")
    cfg, model = load_model(found[0])
    return _layer_figure(model, r, f"What each layer holds: the paper's 5-layer LVAE ({cfg.train.epochs} epochs{found[1]})\n"
                                   "the digit, then its upper layers kept and the rest drawn")


def fig_fashion_samples(r: Results) -> Figure:
    from lvae.results import FASHION, load_model, load_rows, trained_epochs

    paths = [r.results_dir / f"{name}.pt" for name in FASHION if (r.results_dir / f"{name}.pt").is_file()]
    if not paths:
        raise SkipFigure(f"needs Fashion-MNIST weights in {shown(r.results_dir)} (make fashion)")
    grids = {}
    for path in paths:
        cfg, model = load_model(path)
        [result] = load_rows(r.results_dir, (path.stem,)) or [{"training": {"epochs": cfg.train.epochs}}]
        trained, planned = trained_epochs({**result, "config_dict": cfg.to_dict()})
        epochs = f"{trained} epochs" if trained >= planned else f"{trained}/{planned} epochs, partial"
        grids[f"{cfg.name} recipe, {epochs}"] = samples(model, 64)
    return plots.image_grids(grids, nrow=8, title="Fashion-MNIST, prior samples (T = 1)")


def fig_factors(r: Results) -> Figure:
    from lvae.experiments import factor_effects
    from lvae.report.factor_plot import forest

    arms = factor_effects.effects(r.results_dir / "factors", r.results_dir / "paper")
    if not any(a.seeds for a in arms):
        raise SkipFigure(f"needs the factor study's runs in {shown(r.results_dir / 'factors')} (make factors)")
    return forest(arms, "Why the ladder wins: each detail of the paper's code reverted\n(5 layers, BN + WU, 50 epochs, against the sweep)")


# name -> (what it shows, how it is drawn); docs/figures.md lists them in this order.
FIGURES: dict[str, tuple[str, Callable[[Results], Figure]]] = {
    "lvae_vs_vae_samples.png": ("64 samples from each model's prior (N(0, I) at the top, temperature 1).", fig_samples),
    "reconstructions.png": ("Test digits (top row) and their LVAE and VAE reconstructions.", fig_reconstructions),
    "top_latent.png": ("The top latent over test images against N(0, I), coloured by digit, with each unit's marginal.", fig_top_latent),
    "class_histogram.png": ("Digit classes of prior samples, by the shipped classifier, against the test set's frequencies.", fig_class_histogram),
    "kl_per_layer.png": ("KL of each layer over training and at the end (test set), LVAE and VAE.", fig_kl_per_layer),
    "active_units.png": ("Active units per layer (Cov_x E_q[z_u] > 0.01) for both models.", fig_active_units),
    "likelihood.png": ("Test ELBO per epoch for both models, with the final importance-weighted bound where measured.", fig_likelihood),
    "paper_nll_vs_depth.png": ("The paper's depth sweep: test NLL against the number of stochastic layers, four models.", fig_paper_depth),
    "paper_budget_curve.png": ("The ladder's NLL and ELBO advantage over the VAE against training epochs, seed-aware bands.", fig_paper_budget),
    "paper_elbo_curves.png": ("Train and test ELBO per epoch, the 5-layer VAE against the LVAE.", fig_paper_elbo),
    "paper_kl_units.png": ("log KL of every latent unit against epochs (units sorted within each layer), VAE and LVAE.", fig_paper_kl_units),
    "paper_active_units.png": ("Active units per layer, the 5-layer VAE against the LVAE, every seed, counted by covariance and by KL.",
                               fig_paper_active_units),
    "factors.png": ("The factor study: each arm's change in the ladder's NLL, the VAE's and the gap, with seed-aware intervals.", fig_factors),
    "paper_posterior_pca.png": ("PCA of posterior samples of each layer, coloured by digit, VAE and LVAE.", fig_paper_pca),
    "warmup_schedules.png": ("The three β schedules of the warm-up study: none, per iteration, per epoch.", fig_warmup_schedules),
    "warmup_effect.png": ("What each warm-up did to the paper's five-layer ladder: reconstruction, KL per layer, active units.", fig_warmup_effect),
    "encoder_latent_maps.png": ("The deterministic bottom-up pass: mean and log-variance maps of the spatial inner latent.", fig_encoder_maps),
    "precision_weighted_merge.png": ("Encoder, decoder-prior and merged Gaussians for three units of one digit.", fig_merge),
    "merge_weights.png": ("The encoder's weight in the merge against the log-variance gap, for every unit of a batch.", fig_merge_weights),
    "temperature.png": ("LVAE samples at temperatures 0.5, 0.8 and 1.", fig_temperature),
    "layers_seed.png": ("What each layer holds: one digit's upper latents kept, the rest resampled (seed LVAE).", fig_layers_seed),
    "paper_layers_resampled.png": ("What each layer holds in the paper's 5-layer LVAE (results/paper weights).", fig_layers_paper),
    "fashion_samples.png": ("Fashion-MNIST: prior samples of the seed and paper recipes (results/fashion-*.pt); the panel title says "
                            "when a run is partial (the paper recipe stopped before its planned epochs).", fig_fashion_samples),
}


def save(fig: Figure, path: Path) -> Path:
    """PNG at the fixed dpi, with no timestamp in the metadata so an unchanged figure is byte-identical."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def build_figures(names: list[str] | None = None, out_dir: Path = FIGURES_DIR, results: Results | None = None) -> list[Path]:
    """Draw and save the named figures (all by default), training what they need first."""
    import matplotlib

    matplotlib.use("Agg")
    unknown = sorted(set(names or []) - set(FIGURES))
    if unknown:
        raise ConfigError(f"unknown figure(s) {', '.join(unknown)}; choose from: {', '.join(FIGURES)}")
    r = results or Results()
    written = []
    for name in names or list(FIGURES):
        t0 = time.perf_counter()
        torch.manual_seed(SEED)
        try:
            fig = FIGURES[name][1](r)
        except SkipFigure as e:
            print(f"skipped {name}: {e}", flush=True)
            continue
        path = save(fig, Path(out_dir) / name)
        print(f"wrote {path} ({time.perf_counter() - t0:.1f} s)", flush=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lvae.report.figures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="figures to draw (default: all); see --list")
    p.add_argument("--out", type=Path, default=FIGURES_DIR, help="folder for the PNGs (default figures/)")
    p.add_argument("--list", action="store_true", help="list the figures and what each shows")
    a = p.parse_args(argv)
    if a.list:
        for name, (what, _) in FIGURES.items():
            print(f"{name:30s} {what}")
        return 0
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    t0 = time.perf_counter()
    try:
        build_figures(a.names or None, a.out)
    except (ConfigError, ckpt.CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"all figures in {duration(time.perf_counter() - t0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
