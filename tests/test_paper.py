"""`python -m lvae.paper`: the experiment list, the commands it runs, a smoke run end to end,
the paper's figures and the verdict table drawn from its JSON."""

import json
from pathlib import Path

import pytest

from lvae import claims, figures, paper, runs
from lvae.cli import build_parser, config_from_args


def test_the_sweep_has_four_models_at_five_depths_and_three_seeds_on_one_budget():
    exps = paper.experiments()
    sweep = [e for e in exps if e.group == "sweep"]
    long = [e for e in exps if e.group == "long"]
    assert {(e.variant, e.depth, e.seed) for e in sweep} == {(v, d, s) for v in paper.VARIANTS for d in paper.DEPTHS for s in paper.SEEDS}
    assert len(sweep) == 60 and len({e.name for e in exps}) == len(exps) and len(paper.SEEDS) >= 3
    assert {e.budget for e in sweep} == {paper.SWEEP} and paper.SWEEP.epochs >= 50
    assert paper.SWEEP.warmup_epochs <= paper.SWEEP.epochs / 2
    assert sorted((e.variant, e.seed) for e in long) == sorted((v, s) for v in paper.PAIR for s in paper.SEEDS)
    assert {e.depth for e in long} == {5} and paper.LONG.epochs >= 300 and paper.LONG.warmup_epochs == paper.SWEEP.warmup_epochs
    assert paper.LONG.keep_epochs[-1] == paper.LONG.epochs and paper.LONG.iw_samples >= 1000
    assert paper.LONG.headline_iw_samples == 5000
    # the claims table's comparisons come first: every depth's ladder and its baseline at every seed
    first = exps[: 2 * len(paper.DEPTHS) * len(paper.SEEDS)]
    assert {e.variant for e in first} == set(paper.PAIR) and {e.group for e in first} == {"sweep"}


@pytest.mark.parametrize("variant", list(paper.VARIANTS))
def test_each_variant_is_the_paper_config_with_its_changes(variant):
    v = paper.VARIANTS[variant]
    exp = paper.Experiment("x", "sweep", variant, 3, paper.SWEEP, seed=2)
    cfg = config_from_args(build_parser().parse_args(exp.train_argv(Path("runs/x"))))
    assert cfg.model_kind == v.model and cfg.model.batch_norm == v.batch_norm and cfg.train.seed == 2
    assert [l.latent for l in cfg.model.layers] == [64, 32, 16]  # the bottom three rungs of `paper`
    beta = cfg.objective.beta
    if v.warmup:
        assert (beta.kind, beta.start, beta.end, beta.steps) == ("linear_epoch", 0.0, 1.0, paper.SWEEP.warmup_epochs)
    else:
        assert (beta.kind, beta.end) == ("constant", 1.0)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (paper.SWEEP.epochs, 256, 2e-3)
    # the paper code's setup (docs/fidelity.md), for every variant alike
    assert (cfg.train.grad_clip, cfg.train.grad_clip_value, cfg.train.adam_eps, cfg.train.bn_recompute) == (4.0, 0.9, 1e-4, True)
    assert (cfg.model.var_floor, cfg.model.leaky_slope, cfg.model.head_batch_norm) == (1e-5, 0.01, True)


def test_a_long_run_keeps_and_scores_its_epochs(tiny_data, tmp_path):
    exp = paper.Experiment("long-lvae-bn-wu-s0", "long", "lvae-bn-wu", 5, paper.LONG, seed=0)
    cfg = config_from_args(build_parser().parse_args(exp.train_argv(Path("runs/x"))))
    assert cfg.train.keep_epochs == paper.LONG.keep_epochs and cfg.train.epochs == paper.LONG.epochs
    argv = ["--only", "long-lvae-bn-wu-s0", "--epochs", "2", "--iw-samples", "4", "--data-root", str(tiny_data),
            "--limit", "128", "--batch-size", "64", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--no-estimate", "--jobs", "1"]
    assert paper.main(argv) == 0
    r = json.loads((tmp_path / "res" / "long-lvae-bn-wu-s0.json").read_text())
    curve = r["budget_curve"]
    assert sorted(curve, key=int) == ["1", "2"] and curve["2"]["nll"] == r["nll"]
    assert curve["1"]["nll"] != r["nll"] and len(curve["1"]["per_image_log_px"]) == len(r["per_image_log_px"])
    assert "--epoch 1" in curve["1"]["command"]
    assert r["headline"]["iw_samples"] == 4 and len(r["headline"]["per_image_elbo"]) == r["images"]
    # every image's ELBO lies below its importance-weighted log p(x) (the same K samples: Jensen)
    assert all(e <= l + 1e-3 for e, l in zip(r["per_image_elbo"], r["per_image_log_px"]))
    from lvae.results import load_model

    cfg, model = load_model(tmp_path / "res" / "long-lvae-bn-wu-s0.pt")  # what figures/paper_layers_resampled.png draws
    assert cfg.model_kind == "lvae" and model.latent_layers == [0, 1, 2, 3, 4]


def test_a_smoke_run_trains_evaluates_and_is_then_skipped(tiny_data, tmp_path, capsys):
    argv = ["--only", "sweep-L2-vae-s0", "sweep-L2-lvae-bn-wu-s1", "--epochs", "2", "--iw-samples", "4", "--data-root", str(tiny_data),
            "--limit", "128", "--batch-size", "64", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--no-estimate", "--jobs", "1"]
    assert paper.main(argv) == 0
    r = json.loads((tmp_path / "res" / "sweep-L2-lvae-bn-wu-s1.json").read_text())
    assert (r["variant"], r["depth"], r["epochs"], r["iw_samples"], r["model_kind"], r["seed"]) == ("lvae-bn-wu", 2, 2, 4, "lvae", 1)
    assert r["uninterrupted"] and r["commands"][0].startswith("python -m lvae train --config paper --model lvae --depth 2 --seed 1")
    per = r["per_epoch"]
    assert len(per["train_elbo"]) == len(per["elbo"]) == 2
    assert [len(u) for u in per["kl_units"][-1]] == [64, 32]  # every unit of both layers, each epoch
    assert abs(sum(per["kl_units"][-1][0]) - per["kl"][-1][0]) < 1e-6
    assert [layer["layer"] for layer in r["pca"]["layers"]] == [0, 1] and len(r["pca"]["labels"]) == 64
    assert "budget_curve" not in r and "headline" not in r
    vae = json.loads((tmp_path / "res" / "sweep-L2-vae-s0.json").read_text())
    assert vae["model_kind"] == "hvae" and "--no-batch-norm" in vae["commands"][0]
    assert not (tmp_path / "res" / "sweep-L2-vae-s0.pt").exists()  # weights are kept for the long seed-0 runs only
    capsys.readouterr()
    assert paper.main(argv) == 0
    assert "0 to run" in capsys.readouterr().out

    # a JSON from before per-image estimates were saved is re-scored by the same evaluate command
    path = tmp_path / "res" / "sweep-L2-vae-s0.json"
    old = json.loads(path.read_text())
    stripped = {k: v for k, v in old.items() if k != "per_image_log_px"}
    path.write_text(json.dumps(stripped))
    assert paper.main([*argv, "--add-per-image"]) == 0
    assert "re-scored 1 run(s)" in capsys.readouterr().out  # the other one still has its own
    new = json.loads(path.read_text())
    assert new["per_image_log_px"] == old["per_image_log_px"] and new["nll"] == old["nll"]  # seeded: the same estimate
    assert new["rescored"]["nll_before"] == old["nll"] and new["rescored"]["command"].startswith("python -m lvae evaluate")
    assert new["pca"] == old["pca"] and new["commands"] == old["commands"]  # the rest of the record is kept


# ----------------------------------------------------------------------------- made-up results


def fake_result(variant: str, depth: int, group: str, nll: float, active: list[int]) -> dict:
    sizes = [64, 32, 16, 8, 4][:depth]
    epochs = 3
    return {"name": f"{group}-{variant}", "group": group, "variant": variant, "label": paper.VARIANTS[variant].label,
            "depth": depth, "epochs": epochs, "nll": nll, "nll_stderr": 0.2, "iw_samples": 100, "train_seconds": 60.0,
            "train_threads": 1, "uninterrupted": True, "active_units": active[:depth], "latent_units": sizes,
            "per_epoch": {"train_elbo": [-120.0, -100.0, -95.0], "elbo": [-118.0, -101.0, -97.0],
                          "kl_units": [[[0.001 * (u + 1) * (e + 1) for u in range(n)] for n in sizes] for e in range(epochs)]},
            "pca": {"labels": [i % 10 for i in range(50)],
                    "layers": [{"layer": k, "coords": [[i * 0.1, (i % 7) * 0.2] for i in range(50)], "explained_variance": [0.3, 0.1]}
                               for k in range(depth)]}}


def write_results(folder: Path, lvae_gap_at: dict[int, float]) -> None:
    """A full sweep where the ladder's NLL is the VAE's plus `lvae_gap_at[depth]` (default -3), BN and WU each help by 2."""
    folder.mkdir(parents=True, exist_ok=True)
    for d in paper.DEPTHS:
        base = 100.0 - d
        nll = {"vae": base + 4, "vae-bn": base + 2, "vae-bn-wu": base, "lvae-bn-wu": base + lvae_gap_at.get(d, -3.0)}
        for v, x in nll.items():
            r = fake_result(v, d, "sweep", x, [40, 20, 1, 0, 0] if v.startswith("vae") else [60, 30, 12, 6, 3])
            r["name"] = f"sweep-L{d}-{v}"
            (folder / f"{r['name']}.json").write_text(json.dumps(r))


DEPTH = "Stacking layers helps the ladder more than the VAE (NLL gain from L = 1 to L = 5, both BN + WU)"


def verdicts(folder: Path) -> dict[str, str]:
    return {c.claim: c.verdict for c in claims.paper_claims(paper.load_results(folder))}


def test_verdicts_follow_the_numbers(tmp_path):
    write_results(tmp_path / "a", {})
    v = verdicts(tmp_path / "a")
    assert v["The ladder beats the VAE (both with BN + WU) at every depth from 2 to 5"] == "reproduced"
    assert v["Batch norm helps the VAE"] == "reproduced" and v["KL warm-up helps the VAE (with BN)"] == "reproduced"
    assert v["The ladder keeps more active units in its upper layers (z1 … z4)"] == "reproduced"
    assert v["The deep VAE's upper layers collapse (less so with BN and WU; the ladder's least)"] == "reproduced"
    assert next(x for k, x in v.items() if k.startswith("A 5-layer LVAE")) == "not measured yet"
    assert v[DEPTH] == "not reproduced: no significant difference"  # both gain 4 nats from L = 1 to 5

    write_results(tmp_path / "b", {2: +1.0, 4: -0.1})  # worse at L=2, within noise at L=4
    v = verdicts(tmp_path / "b")
    assert v["The ladder beats the VAE (both with BN + WU) at every depth from 2 to 5"] == "partly: at L = 5, 3 of 5, 4, 3, 2"

    write_results(tmp_path / "c", {})
    for p in (tmp_path / "c").glob("sweep-L[12]-*.json"):
        p.unlink()
    v = verdicts(tmp_path / "c")
    assert v["The ladder beats the VAE (both with BN + WU) at every depth from 2 to 5"] == "reproduced (partial sweep: L = 5, 4, 3 measured)"
    assert v[DEPTH] == "not measured yet"

    write_results(tmp_path / "d", {1: +1.0})  # the one-layer ladder is worse: it gains 8 nats from depth, the VAE 4
    assert verdicts(tmp_path / "d")[DEPTH] == "reproduced"
    write_results(tmp_path / "e", {5: +1.0})  # the five-layer ladder is worse: it gains 0 nats, the VAE 4
    assert verdicts(tmp_path / "e")[DEPTH] == "not reproduced: depth helps the VAE more"


def test_the_paper_figures_are_drawn_from_the_json_and_skipped_without_it(tmp_path, capsys):
    names = [n for n in figures.FIGURES if n.startswith("paper_")]
    assert len(names) == 6  # five from the JSON, one from the 5-layer ladder's weights
    r = runs.Results(runs.FAST, tmp_path / "results", tmp_path / "data", progress=False)
    assert figures.build_figures(names, out_dir=tmp_path / "none", results=r) == []
    assert capsys.readouterr().out.count("skipped paper_") == 6
    write_results(tmp_path / "results" / "paper", {})
    written = figures.build_figures(names, out_dir=tmp_path / "figs", results=r)
    assert sorted(p.name for p in written) == sorted(set(names) - {"paper_layers_resampled.png"})
    assert "partial" not in capsys.readouterr().out


def test_a_gap_is_paired_when_both_runs_saved_their_per_image_estimates():
    a = {"nll": 90.0, "nll_stderr": 1.0, "per_image_log_px": [-80.0, -100.0, -90.0]}
    b = {"nll": 90.5, "nll_stderr": 1.0, "per_image_log_px": [-80.4, -100.6, -90.5]}
    gap, se = claims._gap(a, b)
    assert gap == pytest.approx(-0.5) and se == pytest.approx(0.0577, abs=1e-3)  # the spread of +0.4, +0.6, +0.5 only
    del b["per_image_log_px"]
    assert claims._gap(a, b) == (pytest.approx(-0.5), pytest.approx(2**0.5))  # unpaired: the two means' errors add


def test_the_paper_best_verdict_follows_its_json(tmp_path):
    def verdict(**fields) -> str:
        r = {"nll": 82.5, "nll_stderr": 0.2, "iw_samples": 5000, "training": {"epochs": 160}, "train_wall_minutes": 55.0,
             "train_threads": 2, "within_budget": True, **fields}
        (tmp_path / "paper-best.json").write_text(json.dumps(r))
        return claims.paper_best_claim(tmp_path, {}).verdict

    assert claims.paper_best_claim(tmp_path, {}).verdict == "not measured yet"
    assert verdict() == "not met: 0.50 nats above 82.0"
    assert verdict(nll=81.9) == "met"
    assert verdict(nll=81.9, train_wall_minutes=61.0, within_budget=False) == "not met: training took 61 min, over the 60-minute budget"


def test_paper_best_is_the_paper_ladder_with_the_kept_ablation_arms():
    from lvae.config import named_config

    paper, best = named_config("paper"), named_config("paper-best")
    assert [s.latent for s in best.model.layers] == [s.latent for s in paper.model.layers]  # the same stochastic layers
    assert [s.channels for s in best.model.layers] == [(2 * w, 2 * w) for w, _ in (s.channels for s in paper.model.layers)]
    assert best.train.lr_schedule == "cosine" and paper.train.lr_schedule == "constant"
    assert (best.model.likelihood, best.model.batch_norm, best.objective) == (paper.model.likelihood, paper.model.batch_norm, paper.objective)


def test_paper_best_runner_records_one_command_and_its_wall_clock(tiny_data, tmp_path):
    from lvae import paper_best

    out = tmp_path / "res" / "pb.json"
    assert paper_best.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--iw-samples", "2", "--threads", "1", "--data-root", str(tiny_data),
                            "--test-limit", "40", "--",
                            "--epochs", "1", "--limit", "64", "--batch-size", "32"]) == 0
    r = json.loads(out.read_text())
    assert r["uninterrupted"] and r["train_threads"] == 1 and 0 < r["train_wall_minutes"] < r["budget_minutes"] and r["within_budget"]
    assert r["command"].startswith("python -m lvae train --config paper-best --out ") and "--overwrite" not in r["command"]
    assert r["iw_samples"] == 2 and r["training"]["epochs"] == 1 and len(r["per_image_log_px"]) == r["images"]
