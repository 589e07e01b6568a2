"""`python -m lvae.report.figures` on tiny data: missing runs are trained, cached runs reused, every PNG written."""

import json
from dataclasses import replace
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lvae.report import figures
from lvae.experiments import runs
from lvae.config import ConfigError
from lvae.experiments.runs import Budget, Results
from lvae.training import Interrupted
import signal_hook

TINY = Budget(train_limit=256, epochs=1, warmup_limit=256, warmup_epochs=3, warmup_length=2, eval_images=64,
              prior_samples=40, iw_samples=4, iw_images=16, trainer_test_images=64, tag="")


@pytest.fixture
def results(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setenv("LVAE_RUNS", str(tmp_path / "runs"))
    return Results(TINY, results_dir=tmp_path / "results", data_root=tiny_data, progress=False)


def test_fast_switch_is_read_in_one_place(monkeypatch):
    monkeypatch.delenv("LVAE_FAST", raising=False)
    assert not runs.fast_mode() and runs.budget() is runs.FULL
    monkeypatch.setenv("LVAE_FAST", "1")
    assert runs.fast_mode() and runs.budget() is runs.FAST
    monkeypatch.setenv("LVAE_FAST", "0")
    assert not runs.fast_mode()
    assert runs.FAST.runs_root() != runs.FULL.runs_root()  # fast runs never mix with full-size ones


def test_headline_configs_are_the_cli_ones():
    from lvae.cli import build_parser, config_from_args

    lvae, vae = (runs.headline_config(k, runs.FULL) for k in ("lvae", "top-vae"))
    assert lvae.to_dict() == config_from_args(build_parser().parse_args(["train", "--config", "seed", "--model", "lvae"])).to_dict()
    assert vae.model_kind == "top-vae" and vae.name == "seed-top-vae"


def test_warmup_study_differs_only_in_beta():
    study = runs.warmup_study(runs.FULL)
    dicts = [c.to_dict() for c in study.values()]
    for d in dicts:
        d.pop("name"), d["objective"].pop("beta")
    assert dicts[0] == dicts[1] == dicts[2]
    kinds = [c.objective.beta.kind for c in study.values()]
    assert kinds == ["constant", "linear_iter", "linear_epoch"]
    ipe = runs.iterations_per_epoch(next(iter(study.values())))
    assert study["per iteration"].objective.beta.steps == runs.FULL.warmup_length * ipe


@pytest.mark.slow
def test_every_figure_is_drawn_and_runs_are_reused(results, tmp_path, capsys):
    out = tmp_path / "figs"
    written = figures.build_figures(out_dir=out, results=results)
    # tests/test_paper.py draws the paper's figures, test_fashion_samples_come_from_the_committed_weights Fashion's
    long_run_figures = {n for n in figures.FIGURES if n.startswith(("paper_", "fashion_", "factors"))}  # and make factors
    assert sorted(p.name for p in written) == sorted(set(figures.FIGURES) - long_run_figures)
    for p in written:
        assert_drawn(p, like=figures.FIGURES_DIR / p.name)
    log = capsys.readouterr().out
    assert log.count("skipped paper_") + log.count("skipped fashion_") + log.count("skipped factors") == len(long_run_figures)  # not in this folder
    assert log.count("training ") == 5 and "epochs x" in log  # 2 headline + 3 warm-up runs, each announced

    # summaries were written (full-size budget: into results/summaries) and carry active units per epoch
    s = json.loads((tmp_path / "results" / "summaries" / "warmup-iter.json").read_text())
    assert s["active_epochs"] == [0, 1, 2] and len(s["active_units"][0]) == 5

    # a second build trains nothing and draws the same pictures
    ckpt = tmp_path / "runs" / "seed-lvae" / "checkpoint.pt"
    before = ckpt.stat().st_mtime_ns
    some = ["lvae_vs_vae_samples.png", "top_latent.png", "warmup_effect.png"]
    again = figures.build_figures(some, out_dir=tmp_path / "figs2", results=Results(TINY, tmp_path / "results", results.data_root, progress=False))
    assert "training " not in capsys.readouterr().out and ckpt.stat().st_mtime_ns == before
    for b in again:
        assert (out / b.name).read_bytes() == b.read_bytes(), b.name


def assert_drawn(png: Path, like: Path) -> None:
    """A PNG at the fixed dpi, as large as the committed figure of that name, with something drawn on it:
    a blank or nearly empty canvas, another layout or another resolution fails."""
    from PIL import Image

    with Image.open(png) as im, Image.open(like) as committed:
        assert im.info["dpi"] == pytest.approx((figures.DPI, figures.DPI), abs=0.05), png.name
        assert im.size == committed.size, png.name
        grey = np.asarray(im.convert("L"))
    assert (grey < 128).mean() > 0.005 and len(np.unique(grey)) > 16, png.name  # ink: lines, text, images


@pytest.mark.slow
def test_a_run_folder_of_another_config_is_never_overwritten(results, tmp_path):
    cfg = runs.headline_config("lvae", TINY)
    runs.ensure_run(cfg, tmp_path / "runs" / "x", results.data, progress=False)
    other = replace(cfg, train=replace(cfg.train, lr=5e-4))
    with pytest.raises(ConfigError, match="train.lr"):
        runs.ensure_run(other, tmp_path / "runs" / "x", results.data, progress=False)


def test_unknown_figure_name_is_one_clear_error(capsys):
    assert figures.main(["no_such.png"]) == 2
    assert "unknown figure(s) no_such.png" in capsys.readouterr().err


def test_illustrative_units_span_encoder_led_to_prior_led():
    view = {"logvar_q": torch.tensor([[0.0, 0.0, 0.0]]), "logvar_p": torch.tensor([[3.0, 0.0, -3.0]]),
            "mu_q": torch.zeros(1, 3), "mu_p": torch.ones(1, 3), "mu": torch.zeros(1, 3), "logvar": torch.zeros(1, 3)}
    units = figures.illustrative_units(view)
    assert [u["label"] for u in units] == ["unit 0", "unit 1", "unit 2"]
    assert units[0]["var_p"] > units[0]["var_q"] and units[2]["var_p"] < units[2]["var_q"]


@pytest.mark.slow
def test_estimate_counts_every_step_and_test_pass(monkeypatch):
    ticks = iter(range(1000))
    monkeypatch.setattr(runs.time, "perf_counter", lambda: float(next(ticks)))  # every timed block takes 1 s
    cfg = runs.headline_config("lvae", TINY)  # 256 images, batch 128: 2 iterations per epoch
    cfg.train.epochs = 3
    seconds = runs.estimate_seconds(cfg, n_train=60_000, n_test=64, steps=3)
    assert seconds == pytest.approx(3 * (2 * 1.0 + 64 * 1.0 / 128))


@pytest.mark.slow
def test_a_half_done_run_is_resumed_and_a_dead_one_restarted(results, tmp_path, capsys, monkeypatch):
    cfg = runs.headline_config("lvae", TINY)  # 2 iterations per epoch
    cfg.train.epochs = 2
    run = tmp_path / "runs" / "half"
    with monkeypatch.context() as m, pytest.raises(Interrupted):
        signal_hook.install("SIGINT@2", m)  # Ctrl-C at the end of epoch 1: the next step is saved, then training stops
        runs.ensure_run(cfg, run, results.data, progress=False)
    assert not runs.is_complete(run, cfg)
    runs.ensure_run(cfg, run, results.data, progress=False)
    assert "resuming" in capsys.readouterr().out
    assert runs.is_complete(run, cfg)

    dead = tmp_path / "runs" / "dead"
    dead.mkdir()
    cfg.save(dead / "config.json")
    (dead / "epochs.jsonl").write_text('{"epoch": 0, "elbo": 1}\n')  # rows from a run that never checkpointed
    runs.ensure_run(cfg, dead, results.data, progress=False)
    assert "training" in capsys.readouterr().out
    assert [r["epoch"] for r in runs.read_jsonl(dead / "epochs.jsonl")] == [0, 1]


def test_fashion_samples_come_from_the_committed_weights(tmp_path, capsys):
    from lvae.config import named_config
    from lvae.model import build_model
    from lvae.results import save_weights

    r = Results(TINY, results_dir=tmp_path, progress=False)
    assert figures.build_figures(["fashion_samples.png"], out_dir=tmp_path, results=r) == []
    assert "skipped fashion_samples.png: needs Fashion-MNIST weights" in capsys.readouterr().out
    cfg = named_config("seed")
    cfg.train.dataset = "fashion-mnist"
    torch.manual_seed(0)
    save_weights(cfg, build_model(cfg.model_kind, cfg.model), tmp_path / "fashion-seed-lvae.pt")
    [png] = figures.build_figures(["fashion_samples.png"], out_dir=tmp_path, results=r)
    assert_drawn(png, like=png)  # no committed copy to compare sizes with until make fashion has run


def test_the_figures_doc_shows_every_figure_and_every_figure_is_committed_or_says_what_makes_it():
    root = Path(figures.__file__).resolve().parents[2]
    text = (root / "docs" / "figures.md").read_text()
    section = text.split("<!-- figures:start -->")[1].split("<!-- figures:end -->")[0]
    readme = (root / "README.md").read_text()
    r = Results(TINY, results_dir=root / "results", progress=False)
    for name, (_, draw) in figures.FIGURES.items():
        assert f"(../figures/{name})" in section, f"docs/figures.md does not show {name}"
        if not (root / "figures" / name).is_file():  # only a figure whose results are not committed yet may be missing
            with pytest.raises(figures.SkipFigure):
                draw(r)
    for name in re.findall(r"\(figures/([\w.]+\.png)\)", readme):
        assert (root / "figures" / name).is_file(), f"README shows figures/{name}, which is not committed"


def test_source_shows_the_package_code_not_a_copy():
    from lvae.model import LadderVAE

    code = figures.source(LadderVAE.bottom_up)
    assert code.data.startswith("def bottom_up(self, x: Tensor")  # a method, dedented to read as a function
    assert "out.append(head(h))" in code.data and code.language == "python"
