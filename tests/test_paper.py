"""`python -m lvae.experiments.paper`: the experiment list, the commands it runs, a smoke run end to end,
the paper's figures and the verdict table drawn from its JSON."""

import json
import math
import os
import random
from pathlib import Path

import pytest

from lvae.experiments import claims, paper, runs
from lvae.report import figures
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


@pytest.mark.slow
def test_a_long_run_keeps_and_scores_its_epochs(tiny_data, tmp_path, capsys):
    exp = paper.Experiment("long-lvae-bn-wu-s0", "long", "lvae-bn-wu", 5, paper.LONG, seed=0)
    cfg = config_from_args(build_parser().parse_args(exp.train_argv(Path("runs/x"))))
    assert cfg.train.keep_epochs == paper.LONG.keep_epochs and cfg.train.epochs == paper.LONG.epochs
    argv = ["--only", "long-lvae-bn-wu-s0", "--epochs", "2", "--iw-samples", "4", "--data-root", str(tiny_data),
            "--limit", "128", "--batch-size", "64", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--no-estimate", "--jobs", "1", "--threads", "1"]  # one thread for both scorers: equal floats are the point
    assert paper.main(argv) == 0
    r = json.loads((tmp_path / "res" / "long-lvae-bn-wu-s0.json").read_text())
    curve = r["budget_curve"]
    # a scorer run beside training fills the same cache the runner reads: the same number, not scored twice
    cache = tmp_path / "runs" / "long-lvae-bn-wu-s0" / "scores" / "epoch-1-K4.json"
    assert json.loads(cache.read_text())["nll"] == curve["1"]["nll"]
    cache.unlink()
    assert paper.main([*argv, "--score-kept"]) == 0
    assert json.loads(cache.read_text())["per_image_log_px"] == curve["1"]["per_image_log_px"]
    assert paper.main([*argv, "--score-kept"]) == 0 and "scored 0 kept epoch(s)" in capsys.readouterr().out
    assert sorted(curve, key=int) == ["1", "2"] and curve["2"]["nll"] == r["nll"]
    assert curve["1"]["nll"] != r["nll"] and len(curve["1"]["per_image_log_px"]) == len(r["per_image_log_px"])
    assert "--epoch 1" in curve["1"]["command"]
    assert r["headline"]["iw_samples"] == 4 and len(r["headline"]["per_image_elbo"]) == r["images"]
    # every image's ELBO lies below its importance-weighted log p(x) (the same K samples: Jensen)
    assert all(e <= l + 1e-3 for e, l in zip(r["per_image_elbo"], r["per_image_log_px"]))
    from lvae.results import load_model

    cfg, model = load_model(tmp_path / "res" / "long-lvae-bn-wu-s0.pt")  # what figures/paper_layers_resampled.png draws
    assert cfg.model_kind == "lvae" and model.latent_layers == [0, 1, 2, 3, 4]
    # cut off after its evaluations (in writing the JSON, say): run again, nothing is scored twice
    (tmp_path / "res" / "long-lvae-bn-wu-s0.json").unlink()
    assert paper.main(argv) == 0
    out = capsys.readouterr().out
    assert "scoring" not in out and "evaluating" not in out and "training" not in out
    assert json.loads((tmp_path / "res" / "long-lvae-bn-wu-s0.json").read_text())["per_image_log_px"] == r["per_image_log_px"]


@pytest.mark.slow
def test_a_smoke_run_trains_evaluates_and_is_then_skipped(tiny_data, tmp_path, capsys):
    argv = ["--only", "sweep-L2-vae-s0", "sweep-L2-lvae-bn-wu-s1", "--epochs", "2", "--iw-samples", "4", "--data-root", str(tiny_data),
            "--limit", "128", "--batch-size", "64", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--no-estimate", "--jobs", "1", "--threads", "1"]
    with pytest.raises(SystemExit) as refused:  # refused while the flags are parsed (lvae.flags)
        paper.main([*argv, "--threads", "0"])
    assert refused.value.code == 2 and "--threads: must be between 1 and 1024, got 0" in capsys.readouterr().err
    assert paper.main(argv) == 0
    assert "1 at a time, 1 thread(s) each" in capsys.readouterr().out
    r = json.loads((tmp_path / "res" / "sweep-L2-lvae-bn-wu-s1.json").read_text())
    assert r["train_threads"] == 1
    assert (r["variant"], r["depth"], r["epochs"], r["iw_samples"], r["model_kind"], r["seed"]) == ("lvae-bn-wu", 2, 2, 4, "lvae", 1)
    assert r["uninterrupted"] and r["commands"][0].startswith("python -m lvae train --config paper --model lvae --depth 2 --seed 1")
    per = r["per_epoch"]
    assert len(per["train_elbo"]) == len(per["elbo"]) == 2
    assert [len(u) for u in per["kl_units"][-1]] == [64, 32]  # every unit of both layers, each epoch
    assert abs(sum(per["kl_units"][-1][0]) - per["kl"][-1][0]) < 1e-6
    assert [layer["layer"] for layer in r["pca"]["layers"]] == [0, 1] and len(r["pca"]["labels"]) == 64
    assert "budget_curve" not in r and "headline" not in r and r["train_device"] == "cpu"
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


IMAGES = 200


def fake_result(variant: str, depth: int, group: str, nll: float, active: list[int], seed: int = 0, gap: float = 4.5,
                seed_shift: float = 0.0) -> dict:
    """A run whose images differ from each other the same way in every run (as real test images do)
    and whose seed moves every image's NLL by `seed_shift`; each image's ELBO lies `gap` below its log p(x)."""
    sizes = [64, 32, 16, 8, 4][:depth]
    epochs = 3
    rng = random.Random(1000 * seed + 17 * depth + len(variant))
    log_px = [-(nll + seed_shift + 3.0 * math.sin(i) + rng.gauss(0, 0.3)) for i in range(IMAGES)]
    mean_nll = -sum(log_px) / IMAGES
    return {"name": f"{group}-{variant}-s{seed}", "group": group, "variant": variant, "label": paper.VARIANTS[variant].label,
            "depth": depth, "seed": seed, "epochs": epochs, "nll": mean_nll, "nll_stderr": 0.2, "iw_samples": 100, "elbo": -mean_nll - gap,
            "per_image_log_px": log_px, "per_image_elbo": [x - gap for x in log_px], "train_seconds": 60.0,
            "train_threads": 1, "uninterrupted": True, "active_units": active[:depth], "latent_units": sizes,
            "per_epoch": {"train_elbo": [-120.0, -100.0, -95.0], "elbo": [-118.0, -101.0, -97.0],
                          "kl_units": [[[0.001 * (u + 1) * (e + 1) for u in range(n)] for n in sizes] for e in range(epochs)]},
            "pca": {"labels": [i % 10 for i in range(50)],
                    "layers": [{"layer": k, "coords": [[i * 0.1, (i % 7) * 0.2] for i in range(50)], "explained_variance": [0.3, 0.1]}
                               for k in range(depth)]}}


def write_results(folder: Path, lvae_gap_at: dict[int, float], seeds: tuple[int, ...] = (0, 1, 2), seed_spread_at: dict[int, float] = {}) -> None:
    """A full sweep where the ladder's NLL is the VAE's plus `lvae_gap_at[depth]` (default -3), BN and WU each help by 2;
    at the depths in `seed_spread_at` the ladder's seeds disagree by that many nats; its bound gap is 4.0, the VAE's 4.8."""
    folder.mkdir(parents=True, exist_ok=True)
    for d in paper.DEPTHS:
        base = 100.0 - d
        nll = {"vae": base + 4, "vae-bn": base + 2, "vae-bn-wu": base, "lvae-bn-wu": base + lvae_gap_at.get(d, -3.0)}
        for v, x in nll.items():
            for s in seeds:
                shift = seed_spread_at.get(d, 0.0) * (s - 1) if v == "lvae-bn-wu" else 0.0
                r = fake_result(v, d, "sweep", x, [40, 20, 1, 0, 0] if v.startswith("vae") else [60, 30, 12, 6, 3], seed=s,
                                gap=4.0 if v == "lvae-bn-wu" else 4.8, seed_shift=shift)
                r["name"] = f"sweep-L{d}-{v}-s{s}"
                (folder / f"{r['name']}.json").write_text(json.dumps(r))


def write_long(folder: Path, gaps_by_epoch: dict[int, float], seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """The long pair: the ladder's NLL is the VAE's plus gaps_by_epoch[epoch] at each kept epoch."""
    last = max(gaps_by_epoch)
    for v in paper.PAIR:
        for s in seeds:
            curve = {}
            for e, gap in gaps_by_epoch.items():
                r = fake_result(v, 5, "long", 90.0 + (gap if v == "lvae-bn-wu" else 0.0), [60, 30, 12, 6, 3], seed=s)
                curve[str(e)] = {k: r[k] for k in paper.SCORE_KEYS if k in r}
            r = fake_result(v, 5, "long", 90.0 + (gaps_by_epoch[last] if v == "lvae-bn-wu" else 0.0), [60, 30, 12, 6, 3], seed=s)
            r.update(name=f"long-{v}-s{s}", epochs=last, budget_curve=curve)
            if s == 0:
                r["headline"] = {**curve[str(last)], "iw_samples": 5000}
            (folder / f"{r['name']}.json").write_text(json.dumps(r))


LADDER = "The ladder beats the VAE (both with BN + WU) at every depth from 2 to 5"
DEPTH = "Stacking layers helps the ladder more than the VAE (NLL gain from L = 1 to L = 5, both BN + WU)"
TIGHTER = "The ladder's bound is tighter: its per-image gap log p(x) − ELBO is smaller than the VAE's"
GROWS = "The ladder's advantage grows with training (5 layers, BN + WU; NLL gap at the last kept epoch minus at the first)"


def verdicts(folder: Path) -> dict[str, str]:
    return {c.claim: c.verdict for c in claims.paper_claims(paper.load_results(folder))}


def test_verdicts_follow_the_numbers(tmp_path):
    write_results(tmp_path / "a", {})
    v = verdicts(tmp_path / "a")
    assert v[LADDER] == "LVAE + BN + WU better at 4 of 4 depths, VAE + BN + WU better at 0, no difference at 0"
    assert v["Batch norm helps the VAE"].startswith("VAE + BN better at 5 of 5 depths")
    assert v["KL warm-up helps the VAE (with BN)"].startswith("VAE + BN + WU better at 5 of 5 depths")
    assert v[TIGHTER].startswith("LVAE + BN + WU better at 4 of 4 depths")
    # the made-up runs differ in their covariance counts only: every model's per-unit KL is the same
    assert v["The ladder keeps more active units in its upper layers (z1 … z4)"] == \
        "reproduced by covariance; no significant difference by KL > 0.01 nats"
    assert v["The deep VAE's upper layers collapse (less so with BN and WU; the ladder's least)"] == \
        "reproduced by covariance; not reproduced at 3 of 3 seeds by KL > 0.01 nats"
    assert next(x for k, x in v.items() if k.startswith("A 5-layer LVAE")) == "not measured yet"
    assert v[DEPTH] == "no significant difference"  # both gain 4 nats from L = 1 to 5

    # a reversal reads as a reversal; seeds that disagree by 4 nats leave a 0.3-nat gain unproven
    write_results(tmp_path / "b", {2: +1.0, 4: -0.3}, seed_spread_at={4: 2.0})
    v = verdicts(tmp_path / "b")
    assert v[LADDER] == "LVAE + BN + WU better at 2 of 4 depths, VAE + BN + WU better at 1, no difference at 1"
    measured = next(c.measured for c in claims.paper_claims(paper.load_results(tmp_path / "b")) if c.claim == LADDER)
    assert "L=2: +1.0" in measured and "→ reversed" in measured

    # the same gain with identical seeds is significant: the seed spread is what widened it
    write_results(tmp_path / "b2", {2: +1.0, 4: -0.3})
    assert verdicts(tmp_path / "b2")[LADDER] == "LVAE + BN + WU better at 3 of 4 depths, VAE + BN + WU better at 1, no difference at 0"

    write_results(tmp_path / "c", {}, seeds=(0,))  # one seed per arm: no verdict for a comparison of trained models
    v = verdicts(tmp_path / "c")
    assert v[LADDER] == "not measured yet (no depth has 3 seeds of both)"
    assert v[DEPTH] == "not measured yet (1 of 3 seeds)"

    write_results(tmp_path / "d", {1: +1.0})  # the one-layer ladder is worse: it gains 8 nats from depth, the VAE 4
    assert verdicts(tmp_path / "d")[DEPTH] == "reproduced"
    write_results(tmp_path / "e", {5: +1.0})  # the five-layer ladder is worse: it gains 0 nats, the VAE 4
    assert verdicts(tmp_path / "e")[DEPTH] == "reversed"


def test_the_long_pair_gives_the_budget_curve_and_its_verdict(tmp_path):
    write_results(tmp_path, {})
    write_long(tmp_path, {1: -0.2, 2: -0.6, 3: -1.0})
    v = verdicts(tmp_path)
    assert v[GROWS] == "reproduced"
    assert v["At the long budget, the 5-layer ladder beats the VAE (both BN + WU)"] == "reproduced"
    effects = claims.budget_effects(paper.load_results(tmp_path))
    assert sorted(effects) == [1, 2, 3]
    assert [effects[e][0].mean for e in (1, 2, 3)] == pytest.approx([-0.2, -0.6, -1.0], abs=0.1)
    for p in tmp_path.glob("long-*.json"):
        p.unlink()
    write_long(tmp_path, {1: -1.0, 3: -0.2})  # the advantage shrinks
    assert verdicts(tmp_path)[GROWS] == "reversed"
    reach = next(c for c in claims.paper_claims(paper.load_results(tmp_path)) if c.claim.startswith("A 5-layer LVAE"))
    assert reach.verdict == "reversed" and "K = 5000" in reach.measured  # about 89.8 nats: worse than 82.12 beyond doubt


@pytest.mark.slow
def test_the_paper_figures_are_drawn_from_the_json_and_skipped_without_it(tmp_path, capsys):
    names = [n for n in figures.FIGURES if n.startswith("paper_")]
    assert len(names) == 7  # six from the JSON, one from the 5-layer ladder's weights
    r = runs.Results(runs.FAST, tmp_path / "results", tmp_path / "data", progress=False)
    assert figures.build_figures(names, out_dir=tmp_path / "none", results=r) == []
    assert capsys.readouterr().out.count("skipped paper_") == 7
    write_results(tmp_path / "results" / "paper", {})
    write_long(tmp_path / "results" / "paper", {1: -0.2, 2: -0.6, 3: -1.0})
    written = figures.build_figures(names, out_dir=tmp_path / "figs", results=r)
    assert sorted(p.name for p in written) == sorted(set(names) - {"paper_layers_resampled.png"})


def paper_best_json(**fields) -> dict:
    stage = {"epochs": 1, "commands": ["python -m lvae train ..."], "resumed": False, "cpu_seconds": 100.0, "wall_seconds": 100.0,
             "nll_k1000": 82.6, "nll_k1000_stderr": 0.2}
    return {"nll": 82.5, "nll_stderr": 0.2, "iw_samples": 5000, "cpu_core_hours": 5.5, "budget_core_hours": 6.0, "within_budget": True,
            "train_wall_minutes": 330.0, "train_threads": 1, "uninterrupted": True, "stage_score_iw_samples": 1000,
            "stages": [{**stage, "stage": "main", "gain_over_previous_stage": None},
                       {**stage, "stage": "iw", "nll_k1000": 82.5, "gain_over_previous_stage": {"nll_change": -0.1, "stderr": 0.01}}],
            **fields}


def test_the_paper_best_verdict_follows_its_json(tmp_path):
    def verdict(**fields) -> str:
        (tmp_path / "paper-best.json").write_text(json.dumps(paper_best_json(**fields)))
        return claims.paper_best_claims(tmp_path)[0].verdict

    assert [c.verdict for c in claims.paper_best_claims(tmp_path)] == ["not measured yet"]  # the narrow row only once it exists
    assert verdict(nll=82.3) == "reversed"  # 0.56 above the paper's 81.74, 2.8 standard errors
    assert verdict(nll=81.9) == "no significant difference"
    assert verdict(nll=81.2) == "reproduced"
    assert verdict(nll=81.2, cpu_core_hours=6.5, within_budget=False) == "not met: training took 6.50 CPU-core-hours, over the 6-hour budget"
    measured = claims.paper_best_claims(tmp_path)[0].measured
    assert "main 1 epochs 82.60, iw 1 epochs 82.50 (-0.100 ± 0.010 paired)" in measured
    assert "each stage one uninterrupted `train` command, its commits not recorded" in measured  # a JSON from before stages kept them
    (tmp_path / "paper-best-narrow.json").write_text(json.dumps(paper_best_json(uninterrupted=False)))
    rows = claims.paper_best_claims(tmp_path)
    assert [r.claim.split("`")[1] for r in rows] == ["paper-best", "paper-best-narrow"]
    assert "resumed exactly (2 train commands for 2 stages)" in rows[1].measured


def test_the_paper_best_row_names_every_commit_its_stages_ran_from(tmp_path):
    """A fix between stages (the lr_min one of 58218bf) leaves stages from two commits: the table says which."""
    best = paper_best_json()
    best["stages"][0]["code"], best["stages"][1]["code"] = ["75fb2f3"], ["58218bf + changes"]
    (tmp_path / "paper-best.json").write_text(json.dumps(best))
    assert "from 58218bf + changes, 75fb2f3," in claims.paper_best_claims(tmp_path)[0].measured
    best["stages"][1]["code"] = [None]
    (tmp_path / "paper-best.json").write_text(json.dumps(best))
    assert "from 75fb2f3, some attempts' commits not recorded" in claims.paper_best_claims(tmp_path)[0].measured


def test_paper_best_is_the_paper_ladder_as_its_code_trains_it_twice_as_wide():
    from lvae.config import named_config

    paper, best, narrow = named_config("paper"), named_config("paper-best"), named_config("paper-best-narrow")
    assert [s.latent for s in best.model.layers] == [s.latent for s in paper.model.layers]  # the same stochastic layers
    assert [s.channels for s in best.model.layers] == [(2 * w, 2 * w) for w, _ in (s.channels for s in paper.model.layers)]
    assert [s.channels for s in narrow.model.layers] == [s.channels for s in paper.model.layers]
    assert best.train.lr_schedule == "cosine" and paper.train.lr_schedule == "constant"
    for cfg in (best, narrow):
        assert (cfg.model.likelihood, cfg.model.batch_norm, cfg.objective) == (paper.model.likelihood, paper.model.batch_norm, paper.objective)
        assert (cfg.model.ladder_up, cfg.train.grad_clip, cfg.train.bn_recompute) == (paper.model.ladder_up, paper.train.grad_clip, True)


@pytest.mark.slow
def test_paper_best_runner_trains_three_stages_counts_their_cpu_and_resumes(tiny_data, tmp_path, monkeypatch):
    from lvae.experiments import paper_best
    from tests.conftest import HOOKS

    args = ["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--iw-samples", "3", "--threads", "1",
            "--score-threads", "2", "--data-root", str(tiny_data), "--test-limit", "40", "--limit", "64", "--batch-size", "32",
            "--stage-epochs", "1", "1", "2"]
    real_run = paper_best.run_logged
    threads_by_command = []

    def scored(argv, log, threads, out=None):  # scores run with --score-threads, training with --threads
        threads_by_command.append((argv[0], threads))
        return real_run(argv, log, threads, out)

    monkeypatch.setattr("lvae.experiments.paper.run_logged", scored)

    def iw_stage_stopped(argv, log, threads, out=None):  # SIGTERM in the IW stage's third step, as a session's end would send it
        if "--objective" in argv:
            monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")]))
            monkeypatch.setenv("LVAE_TEST_SIGNAL_AT", "SIGTERM@3")
        threads_by_command.append((argv[0], threads))
        try:
            return real_run(argv, log, threads, out)
        finally:
            monkeypatch.delenv("LVAE_TEST_SIGNAL_AT", raising=False)

    monkeypatch.setattr(paper_best, "run_logged", iw_stage_stopped)
    with pytest.raises(RuntimeError, match="exited with 143"):
        paper_best.main(args)
    assert not (tmp_path / "res" / "paper-best.json").exists()
    assert paper_best.main(args) == 0  # run again: it resumes the IW stage where it stopped, with the same settings
    r = json.loads((tmp_path / "res" / "paper-best.json").read_text())
    assert [s["stage"] for s in r["stages"]] == ["main", "finetune", "iw"] and all(s["cpu_seconds"] > 0 for s in r["stages"])
    assert [s["resumed"] for s in r["stages"]] == [False, False, True] and not r["uninterrupted"]
    main_cmd, iw_cmds = r["stages"][0]["commands"][0], r["stages"][2]["commands"]
    assert main_cmd.startswith("python -m lvae train --config paper-best --limit 64 --batch-size 32 --out ")
    assert "--finetune" in iw_cmds[0] and "--objective iw --iw-train 10" in iw_cmds[0] and " --resume " in iw_cmds[1]
    assert set(threads_by_command) == {("train", 1), ("evaluate", 2)} and r["score_threads"] == 2
    assert all(len(s["code"]) == len(s["commands"]) and all(c and c.split()[0].isalnum() for c in s["code"]) for s in r["stages"])
    assert r["train_threads"] == 1 and r["within_budget"] and 0 < r["cpu_core_hours"] < 0.1
    assert r["stages"][0]["gain_over_previous_stage"] is None and set(r["stages"][1]["gain_over_previous_stage"]) == {"nll_change", "stderr"}
    assert r["iw_samples"] == 3 and r["training"]["epochs"] == 2 and len(r["per_image_log_px"]) == r["images"] == 40
    assert r["check_score"]["iw_samples"] == 1000 and r["check_score"]["iw_chunk"] > 0 and len(r["check_score"]["per_image_log_px"]) == 40
    assert (tmp_path / "res" / "paper-best.pt").stat().st_size < 10 * 2**20
    (tmp_path / "res" / "paper-best.json").unlink()  # run again after it: every stage and every score is reused, nothing runs
    monkeypatch.setattr(paper_best, "run_logged", lambda argv, log, threads, out=None: pytest.fail(f"ran {argv[:2]} again"))
    monkeypatch.setattr("lvae.experiments.paper.run_logged", lambda argv, log, threads, out=None: pytest.fail(f"ran {argv[:2]} again"))
    assert paper_best.main(args) == 0 and json.loads((tmp_path / "res" / "paper-best.json").read_text()) == r


def test_a_stage_cut_off_with_its_parent_counts_as_resumed_and_keeps_its_epochs_time(tmp_path, monkeypatch):
    """A session's end kills the runner too: its attempt leaves no record in stage.json, only epochs and a checkpoint."""
    from lvae.experiments import paper_best

    run_dir = tmp_path / "main"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"")  # never read: training is stubbed below
    (run_dir / "epochs.jsonl").write_text("".join(json.dumps({"epoch": e, "seconds": 60.0, "cpu_seconds": 59.0}) + "\n" for e in range(2)))
    ran = []
    monkeypatch.setattr(paper_best, "finished_epochs", lambda d: 2 if not ran else 3)
    monkeypatch.setattr(paper_best, "run_logged", lambda argv, log, threads, out=None: ran.append(argv))
    record = paper_best.train_stage(paper_best.Stage("main", 3, ()), "paper-best", None, run_dir, 1, (), (), print)
    assert ran[0][:2] == ["train", "--resume"] and record["resumed"]
    assert record["cpu_seconds"] == pytest.approx(118.0) and record["wall_seconds"] == pytest.approx(120.0)  # the epochs' sums


def test_the_seed_readme_claims_follow_their_json_and_need_three_seeds(tmp_path):
    def seed_json(name: str, fid: float, kl_top: float, hist: list[float], class_kl: float) -> None:
        (tmp_path / f"{name}.json").write_text(json.dumps({"fid_mnist": fid, "top_latent_kl_to_prior": kl_top, "latent_units": [392, 16],
                                                           "class_histogram": hist, "class_kl_to_uniform": class_kl}))

    def each_seed(model: str, *args, spread=(0.0, 0.0, 0.0)) -> None:
        for s, d in zip((0, 1, 2), spread):
            fid, kl_top, hist, class_kl = args
            seed_json(f"{model}{'' if s == 0 else f'-s{s}'}", fid + 10 * d, kl_top + d, hist, class_kl + d / 100)

    assert [c.verdict for c in claims.seed_claims(tmp_path)] == ["not measured yet"]
    uneven = [0.05, 0.14, 0.08, 0.08, 0.08, 0.08, 0.08, 0.15, 0.08, 0.18]  # 9, 7 and 1 the most frequent
    seed_json("seed-lvae", 20.0, 0.5, uneven, 0.03)
    seed_json("seed-vae", 40.0, 0.2, [0.1] * 10, 0.0)
    assert {c.verdict for c in claims.seed_claims(tmp_path)} == {"not measured yet (1 of 3 seeds)"}  # one seed is no verdict
    each_seed("seed-lvae", 20.0, 0.5, uneven, 0.03, spread=(0.0, 0.1, -0.1))
    each_seed("seed-vae", 40.0, 0.2, [0.1] * 10, 0.0, spread=(0.0, 0.1, -0.1))
    got = claims.seed_claims(tmp_path)
    assert [c.verdict for c in got] == ["reproduced", "reproduced", "reproduced"]
    assert "[" in got[0].measured and "3 seeds" in got[0].measured  # an interval over the seeds
    # a spread across seeds wide enough to straddle the threshold gives no verdict, whatever the mean
    each_seed("seed-lvae", 20.0, 0.5, uneven, 0.021, spread=(0.0, 1.5, -1.5))
    assert claims.seed_claims(tmp_path)[2].verdict == "no significant difference"
    each_seed("seed-lvae", 39.0, 3.0, [0.14, 0.14, 0.08, 0.08, 0.08, 0.08, 0.08, 0.08, 0.16, 0.08], 0.03, spread=(0.0, 0.1, -0.1))
    got = [c.verdict for c in claims.seed_claims(tmp_path)]
    assert got[0] == "reversed" and got[1] == "reversed" and got[2] == "no: uneven, but the most frequent are 8, 0, 1"
    each_seed("seed-lvae", 39.0, 3.0, [0.1] * 10, 0.001, spread=(0.0, 0.1, -0.1))  # even classes: reversed by the same rule
    assert claims.seed_claims(tmp_path)[2].verdict == "reversed"


def test_the_readme_headline_block_lists_each_claim_and_the_best_nll(tmp_path):
    from lvae.report import docs

    write_results(tmp_path / "paper", {})
    (tmp_path / "paper-best.json").write_text(json.dumps(paper_best_json(nll=81.6, nll_stderr=0.05)))
    lines = docs.summary(tmp_path).splitlines()
    extra = docs.costs(tmp_path) + docs.seed_winners(tmp_path)  # what the runs cost, which seed model wins: rendered after
    assert len(lines) == len(claims.paper_claims(paper.load_results(tmp_path / "paper"))) + 2 + len(extra)  # every claim, paper-best, the best NLL
    assert f"- {LADDER}: **LVAE + BN + WU better at 4 of 4 depths, VAE + BN + WU better at 0, no difference at 0**" in lines
    best = lines.index(next(l for l in lines if l.startswith("- Best NLL")))
    assert lines[best - 1].endswith("**reproduced**")  # 81.6 ± 0.05 is below the paper's 81.74 beyond doubt
    assert lines[best] == ("- Best NLL in this repo: **81.60 ± 0.05 nats** (`paper-best`, the 5-layer ladder at twice the paper's width, "
                           "K = 5000, 5.50 CPU-core-hours in 2 stages, one seed) beside the paper's "
                           "82.12 (81.84 fine-tuned, 81.74 fine-tuned with the IW bound)")


def test_paper_best_takes_bf16_and_the_moving_average_exactly_when_the_equal_cpu_ablation_kept_them():
    """Issue 17: a speed ingredient joins the recipe only if its paired, seed-aware ablation at an equal CPU
    time (results/paper-ablations-cpu.json) kept it; the recipe and the committed verdicts must agree."""
    from lvae.config import paper_best_config, paper_best_narrow_config
    from lvae.experiments.ablations import ROWS

    rows = {r["name"]: r for r in json.loads((Path(__file__).resolve().parents[1] / "results/paper-ablations-cpu.json").read_text())["rows"]}
    for cfg in (paper_best_config(), paper_best_narrow_config()):
        adopted = {"bf16": cfg.train.amp == ROWS["bf16"][1]["train.amp"], "ema": cfg.train.ema_decay == ROWS["ema"][1]["train.ema_decay"]}
        assert adopted == {name: rows[name]["verdict"].startswith("kept") for name in adopted}, (adopted, {n: rows[n]["verdict"] for n in adopted})
