"""The docs' results and claims, rendered from results/*.json and results/paper/*.json.

    python -m lvae.report.docs [--check]
        renders README.md's summary (the claims' verdicts, the best NLL beside the paper's),
        docs/results.md (the seed runs, Fashion-MNIST, the ablations, the seed study) and
        docs/claims.md (the paper's claims table, lvae.experiments.claims)

No number in those blocks is typed by hand: each comes from a JSON file that a command wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lvae.checkpoint import CheckpointError
from lvae.experiments import claims, paper
from lvae.experiments.effects import MIN_SEEDS, NO_DIFFERENCE, REPRODUCED, REVERSED, known_effect, seed_effect, verdict
from lvae.results import FASHION, HEADLINE, RESULT, RESULTS, trained_epochs
from lvae.results import load_rows as load_json_rows
from lvae.runfiles import read_json, reading
from lvae.textblocks import json_sections, replace_blocks

README = Path("README.md")
RESULTS_DOC = Path("docs/results.md")
CLAIMS_DOC = Path("docs/claims.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"
CLAIMS_START, CLAIMS_END = "<!-- claims:start -->", "<!-- claims:end -->"
SUMMARY_START, SUMMARY_END = "<!-- summary:start -->", "<!-- summary:end -->"
FACTORS_START, FACTORS_END = "<!-- factors:start -->", "<!-- factors:end -->"
FIDELITY_DOC = Path("docs/fidelity.md")


def _fmt_list(xs: list[float], digits: int = 1) -> str:
    return " / ".join(f"{x:.{digits}f}" for x in xs)

def _judged(r: dict[str, Any], key: str, fmt: str) -> str:
    """A sample-quality number, or why there is none (the digit classifier does not judge clothes)."""
    return format(r[key], fmt) if key in r else "n/a (digits only)"

def epochs_cell(r: dict[str, Any]) -> str:
    trained, planned = trained_epochs(r)
    return str(trained) if trained >= planned else f"{trained} of {planned} (**partial**)"

def elbo_cell(r: dict[str, Any]) -> str:
    """The test ELBO: the mean of the per-image ELBOs (each the average of the K importance samples' bounds) with its
    standard error where the JSON has them; else the JSON's `elbo`, one sample per image, marked so."""
    per = r.get("per_image_elbo")
    if not per or len(per) < 2:
        return f"{r['elbo']:.2f} (1 sample)"
    n = len(per)
    mean = sum(per) / n
    se = (sum((x - mean) ** 2 for x in per) / (n - 1) / n) ** 0.5
    return f"{mean:.2f} ± {se:.2f}"


def headline_table(rows: list[dict[str, Any]]) -> str:
    head = ("| run | model | likelihood | epochs | train time | test ELBO | NLL (IW) | K | KL per layer (bottom → top) "
            "| active units | class KL to uniform | FID_MNIST |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        t = r["training"]
        lines.append(
            f"| `{r['name']}` | {r['model_kind']} | {r['likelihood']} | {epochs_cell(r)} | {t['train_seconds'] / 60:.1f} min "
            f"| {elbo_cell(r)} | **{r['nll']:.2f}** ± {r['nll_stderr']:.2f} | {r['iw_samples']} | {_fmt_list(r['kl_per_layer'])} "
            f"| {' / '.join(f'{a}/{u}' for a, u in zip(r['active_units'], r['latent_units']))} "
            f"| {_judged(r, 'class_kl_to_uniform', '.4f')} | {_judged(r, 'fid_mnist', '.1f')} |")
    return "\n".join(lines)

def seed_study_table(study: dict[str, Any]) -> str:
    lines = [f"Each variant trains for the seed's 3 epochs (`lvae/experiments/seed_study.py`); class histograms and FID_MNIST use "
             f"10,000 prior samples judged by the shipped classifier. FID_MNIST of 10,000 real training digits against "
             f"the test digits, the floor: {study['fid_train_vs_test']:.1f}.", "",
             "| variant | what it changes | class KL to uniform (T=1) | (T=0.8) | FID_MNIST (T=1) | KL per layer | most / least frequent digit |",
             "|---|---|---|---|---|---|---|"]
    for r in study["rows"]:
        h = r["class_histogram"]
        top, low = max(range(10), key=h.__getitem__), min(range(10), key=h.__getitem__)
        lines.append(f"| `{r['name']}` | {r['what']} | {r['class_kl_to_uniform']:.4f} | {r['by_temperature']['0.8']['class_kl_to_uniform']:.4f} "
                     f"| {r['fid_mnist']:.1f} | {_fmt_list(r['kl_per_layer'])} | {top} ({h[top]:.3f}) / {low} ({h[low]:.3f}) |")
    return "\n".join(lines + ["", *study_targets(study)])

def ablation_table(abl: dict[str, Any]) -> str:
    """An ablation JSON's rows: at equal epochs (epochs, train time) or at an equal training-CPU time (issue 17's
    speed-for-quality arms: the budget, how far each seed got), then what each scored and its verdict."""
    equal_cpu = "cpu_seconds_budget" in abl["rows"][0]["training"]
    budget = "training CPU per seed | epochs reached, by seed" if equal_cpu else "epochs | train time"
    lines = [f"| row | change | {budget} | test ELBO (1 sample per image) | NLL (IW) | K | active units | kept? |", "|---|---|---|---|---|---|---|---|---|"]
    for r in abl["rows"]:
        t = r["training"]
        spent = (f"{t['cpu_seconds_budget']:g} s | {', '.join(map(str, t['epochs_reached']))}" if equal_cpu else
                 f"{t['epochs']} | {t['train_seconds'] / 60:.1f} min")
        lines.append(f"| `{r['name']}` | {r['what']} | {spent} | {r['elbo']:.2f} | {r['nll']:.2f} ± {r['nll_stderr']:.2f} | {r['iw_samples']} "
                     f"| {' / '.join(map(str, r['active_units']))} | {ablation_verdict(abl, r)} |")
    return "\n".join(lines)


def ablation_verdict(abl: dict[str, Any], r: dict[str, Any]) -> str:
    """An arm's kept / dropped verdict, recomputed here from the per-seed NLLs of the arm and the row it is compared with
    (the mean per-seed difference with its t-interval over seeds, df = S - 1: the two-level interval of
    lvae/experiments/effects.py, no verdict below its minimum of seeds). The verdict string stored in the JSON was computed
    with the interval of its day and is shown only where there is nothing to recompute from (marked "stored")."""
    rows = {x["name"]: x for x in abl["rows"]}
    ref = rows.get(r.get("against") or "baseline")
    if ref is None or ref is r or "seeds" not in r or "seeds" not in ref:
        return f"{r['verdict']} (stored)" if r.get("verdict") else ""
    mine, theirs = ({s["seed"]: s["nll"] for s in row["seeds"]} for row in (r, ref))
    diffs = [mine[s] - theirs[s] for s in sorted(set(mine) & set(theirs))]
    if len(diffs) < 2:
        return f"{r['verdict']} (stored)" if r.get("verdict") else ""
    e = seed_effect(diffs)
    v = verdict(e, claimed_sign=-1, min_seeds=MIN_SEEDS)
    word = {REPRODUCED: "kept", REVERSED: "dropped", NO_DIFFERENCE: "no clear effect"}.get(v, v)
    return f"{word}: {e.mean:+.2f} [{e.low:+.2f}, {e.high:+.2f}] against `{ref['name']}` ({len(diffs)} seeds)"

def hardware_phrase(hw: dict[str, Any]) -> str:
    """What a JSON's `hardware` record says, in words: CPU model, cores, threads, torch, GPU."""
    cores = f", {hw['cores']} cores" if hw.get("cores") else ""
    gpu = f"GPU {hw['cuda']}" if hw.get("cuda") else "no GPU"
    return f"{hw['cpu']}{cores}, {hw['threads']} thread(s), torch {hw['torch']}, {gpu}"

def top_latent_note(rows: list[dict[str, Any]]) -> str:
    """What a top-latent VAE row is, with its latent sizes read from the JSON."""
    tops = [r for r in rows if r["model_kind"] in ("top-vae", "vae")]
    if not tops:
        return ""
    sizes = ", ".join(f"{r['latent_units'][-1]} units in `{r['name']}`" for r in tops)
    return (f"A `top-vae` run is the package's `TopLatentVAE` on the same trunks: only the top rung is stochastic "
            f"({sizes}), the lower rungs pass their prior mean on. It is the seed's comparison, not the paper's: "
            "the paper's VAE, with every stochastic layer, is in the next section.")

def fashion_intro(rows: list[dict[str, Any]]) -> str:
    """What the Fashion-MNIST rows are and what they cannot say."""
    return ("The `seed` and `paper` recipes, unchanged, on Fashion-MNIST (`--data fashion-mnist`): the `seed` row scores "
            "the Gaussian (MSE) density of the grey levels, the `paper` row the Bernoulli likelihood of dynamically "
            "binarized images. Class coverage and FID_MNIST are not reported: the package's judge is an MNIST digit "
            "classifier, and its features say nothing about clothes. Measured on: "
            + "; ".join(sorted({hardware_phrase(r["hardware"]) for r in rows})) + ".")

def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issues' targets that these runs bear on, checked against the saved numbers."""
    out = [f"- `{r['name']}` class KL to uniform ≤ {claims.CLASS_KL_UNEVEN} nats: {r['class_kl_to_uniform']:.4f} (one run, no error bar): "
           f"**{verdict(known_effect(r['class_kl_to_uniform'] - claims.CLASS_KL_UNEVEN, 0.0))}**." for r in rows if "class_kl_to_uniform" in r]
    if not any(r["hardware"].get("cuda") for r in rows):
        out.append("- GPU targets: not attempted (no run's hardware record shows a GPU).")
    return out

def study_targets(study: dict[str, Any]) -> list[str]:
    """Which seed-study variants are near class-uniform (KL <= 0.02) with samples as sharp as the shipped seed config's."""
    rows = {r["name"]: r for r in study["rows"]}
    if "lvae" not in rows:
        return []
    ref = rows["lvae"]["fid_mnist"]
    good = [r for r in study["rows"] if r["class_kl_to_uniform"] <= 0.02 and r["fid_mnist"] <= ref]
    if not good:
        return [f"No variant yet reaches class KL ≤ 0.02 with FID_MNIST ≤ {ref:.1f} (the shipped `lvae` row)."]
    return [f"Near class-uniform (KL ≤ 0.02) and as sharp as the shipped seed LVAE (FID_MNIST ≤ {ref:.1f}): "
            + ", ".join(f"`{r['name']}` (KL {r['class_kl_to_uniform']:.4f}, FID {r['fid_mnist']:.1f})" for r in good) + "."]

def load_rows(results_dir: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The saved results among `names`, in that order; each is checked by rendering it alone, so a damaged one is named."""
    rows = []
    for r, name in zip(load_json_rows(results_dir, names), [n for n in names if (results_dir / f"{n}.json").exists()]):
        with reading(results_dir / f"{name}.json", RESULT, "restore it, or save the result again"):
            _render_alone(r)
        rows.append(r)
    return rows


def _render_alone(r: dict[str, Any]) -> str:
    """Everything `render` writes about one result: what a damaged file breaks fails here, where the file is known."""
    return "\n".join([headline_table([r]), top_latent_note([r]), fashion_intro([r]), *targets([r]), f"`{r['name']}`: `{r['command']}`"])


def render(results_dir: Path = RESULTS) -> str:
    """The markdown that goes between docs/results.md's results markers."""
    parts = []
    rows = load_rows(results_dir, HEADLINE)
    if rows:
        parts += ["Test-set numbers in nats per image (`python -m lvae evaluate`; `seed` runs score the Gaussian "
                  "(MSE) density of the grey levels). Measured on: " + "; ".join(
                      sorted({f"{hardware_phrase(r['hardware'])}" for r in rows})) + ". Train time counts training steps only "
                  "(the per-epoch test ELBO excluded); other jobs shared the CPU. The test ELBO is the mean over images of each "
                  "image's ELBO averaged over its K importance samples, ± its standard error, where the JSON keeps "
                  "`per_image_elbo`; a value marked (1 sample) is the JSON's `elbo`, one sample per image (about "
                  "0.05 nats of sampling noise).",
                  "", headline_table(rows), "", top_latent_note(rows), "", "Commands:", ""]
        parts += [f"- `{r['name']}`: `{r['command']}`" for r in rows]
        parts += ["", *targets(rows)]
    fashion = load_rows(results_dir, FASHION)
    if fashion:
        parts += ["", "### Fashion-MNIST", "", fashion_intro(fashion), "", headline_table(fashion), "",
                  "Commands (`make fashion`):", "", *[f"- `{r['name']}`: `{r['command']}`" for r in fashion], "",
                  "![Fashion-MNIST samples](../figures/fashion_samples.png)"]
    parts += json_sections(results_dir, (("paper-ablations.json", "Ablations on the `paper` LVAE (the first setup, docs/fidelity.md)", ablation_table),
                                         ("paper-ablations-cpu.json", "bf16 and a moving average at an equal training-CPU time (`python -m "
                                          "lvae.experiments.ablations --equal-cpu-seconds S`)", ablation_table),
                                         ("paper-ablations-stages.json", "What fine-tuning and the IW bound buy, seed by seed "
                                          "(`python -m lvae.experiments.stage_ablations`)", ablation_table),
                                         ("seed-study.json", "The seed's class imbalance (\"mode collapse\")", seed_study_table)))
    return "\n".join(parts) if parts else "(no results yet: see `python -m lvae.results save`)"


def summary(results_dir: Path = RESULTS) -> str:
    """README's headline block: each of the paper's claims with its verdict, and the best NLL beside the paper's."""
    lines = claims.summary(results_dir)
    for name in ("paper-best", "paper-best-v1"):  # the current recipe where it has run, else the first one
        best = results_dir / f"{name}.json"
        if best.is_file():
            r = read_json(best, RESULT)
            with reading(best, RESULT, "restore it, or run make paper-best again"):
                how = (f"{r['cpu_core_hours']:.2f} CPU-core-hours in {len(r['stages'])} stages" if "stages" in r
                       else f"{r['training']['epochs']} epochs, the first recipe")
                width = "the 5-layer ladder at twice the paper's width, " if name == "paper-best" else ""
                line = (f"- Best NLL in this repo: **{r['nll']:.2f} ± {r['nll_stderr']:.2f} nats** (`{name}`, {width}K = {r['iw_samples']}, "
                        f"{how}, one seed) beside the paper's {claims.PAPER_LVAE_NLL} "
                        f"({claims.PAPER_LVAE_FINETUNED_NLL} fine-tuned, {claims.PAPER_LVAE_FINETUNED_IW_NLL} fine-tuned with the IW bound)")
            lines.append(line)
            break
    return "\n".join(lines + costs(results_dir) + seed_winners(results_dir))


def costs(results_dir: Path = RESULTS) -> list[str]:
    """How long `make demo` and `make paper` took on the machine that ran them, from the times their JSONs recorded."""
    lines = []
    demo = results_dir / "seed-lvae.json"
    if demo.is_file():
        r = read_json(demo, RESULT)
        with reading(demo, RESULT, "restore it, or save the result again"):
            lines.append(f"- `make demo` trains the `seed` ladder: {r['training']['train_seconds'] / 60:.0f} min of training steps "
                         f"for {r['training']['epochs']} epochs on {hardware_phrase(r['hardware'])} (`results/seed-lvae.json`)")
    runs = claims.paper.load_results(results_dir / "paper")
    if runs:
        train = sum(r["train_seconds"] for r in runs.values()) / 3600
        score = sum(r.get("eval_seconds", 0.0) for r in runs.values()) / 3600
        hw = sorted({hardware_phrase(r["hardware"]) for r in runs.values() if "hardware" in r})
        lines.append(f"- `make paper`: {len(runs)} runs, {train:.1f} h of training and {score:.1f} h of scoring, one thread each; "
                     f"it runs two at a time, so about {(train + score) / 2:.1f} h of wall clock on {'; '.join(hw)} "
                     f"(`results/paper/*.json`)")
    return lines


def checked_result(path: Path) -> dict[str, Any]:
    """A result JSON whose headline numbers are there; a damaged one gives one line that names it."""
    r = read_json(path, RESULT)
    with reading(path, RESULT, "restore it, or save the result again"):
        for key in ("nll", "nll_stderr", "fid_mnist", "iw_samples"):
            r[key]
    return r


def seed_winners(results_dir: Path = RESULTS) -> list[str]:
    """Which of the first figures' two models wins on NLL and on FID_MNIST (lower is better for both)."""
    paths = [results_dir / "seed-lvae.json", results_dir / "seed-vae.json"]
    if not all(p.is_file() for p in paths):
        return []
    lv, va = (checked_result(p) for p in paths)
    better = lambda key: "the ladder" if lv[key] < va[key] else "the top-latent VAE"  # noqa: E731
    return [f"- The first figures below (`seed` config, 3 epochs, one training seed each): NLL (K = {lv['iw_samples']}, Gaussian "
            f"likelihood) LVAE {lv['nll']:.2f} ± {lv['nll_stderr']:.2f}, top-latent VAE {va['nll']:.2f} ± {va['nll_stderr']:.2f}: "
            f"{better('nll')} is lower; FID_MNIST LVAE {lv['fid_mnist']:.1f}, VAE {va['fid_mnist']:.1f}: {better('fid_mnist')} is lower"]


def factor_section(results_dir: Path = RESULTS) -> str:
    """docs/claims.md's factor-study block: every arm's changes, the joint arm against the sum, and how far the study is."""
    from lvae.experiments import factor_effects, factors

    runs, base = factor_effects.load(results_dir / "factors", results_dir / "paper")
    arms = [factor_effects.arm_effect(f, runs, base) for f in factors.FACTORS]
    done = [r for r in runs.values() if r.get("group") == "factor"]
    joint = factor_effects.interaction(runs, base)
    total = len(factors.experiments())
    hours = sum(r["train_seconds"] for r in done) / 3600
    lines = [f"Runs finished: **{len(done)} of {total}**{'' if len(done) == total else ' (partial: an arm below 3 seeds gets no verdict)'}; "
             f"their training steps took {hours:.1f} h of wall-clock time, one thread each (a shared machine's wall time: an upper "
             f"bound on their CPU time; `python -m lvae.experiments.factors`, "
             f"`results/factors/*.json`). Changes are NLL(arm) − NLL(baseline) in nats, K = {paper.SWEEP.iw_samples}, paired by seed "
             f"and image against the committed sweep (`results/paper/sweep-L5-*-bn-wu-s*.json`); 95 % intervals include the spread "
             f"across training seeds. The gap is NLL(LVAE) − NLL(VAE): a positive change means the reverted detail carried part of "
             f"the ladder's advantage.", "", *factor_effects.table(arms), ""]
    if joint:
        lines.append(f"All eight reverted together change the gap by {joint[0].describe()}; the eight single changes add up to "
                     f"{joint[1].describe()}; the interaction (joint − sum) is {joint[2].describe()}.")
    else:
        lines.append("The joint arm against the sum of the single ones: not measured yet (it needs every arm at a common seed).")
    return "\n".join(lines)


def fidelity_cells(results_dir: Path = RESULTS) -> dict[str, str]:
    """docs/fidelity.md's "measured effect" cell of rows 1-8: the gap's change when that detail is reverted, and its verdict."""
    from lvae.experiments import factor_effects

    cells = {}
    for a in factor_effects.effects(results_dir / "factors", results_dir / "paper"):
        if a.factor.detail:
            cells[str(a.factor.detail)] = ("not measured yet" if a.gap is None else
                                           f"{a.gap.mean:+.2f} [{a.gap.low:+.2f}, {a.gap.high:+.2f}] ({len(a.seeds)} seeds): {a.judged}")
    return cells


def blocks(results_dir: Path = RESULTS) -> dict[Path, dict[Any, Any]]:
    """Every rendered block, by the file it goes in."""
    return {README: {(SUMMARY_START, SUMMARY_END): summary(results_dir)},
            RESULTS_DOC: {(START, END): render(results_dir)},
            CLAIMS_DOC: {(CLAIMS_START, CLAIMS_END): claims.render(results_dir),
                         (FACTORS_START, FACTORS_END): factor_section(results_dir)},
            FIDELITY_DOC: {"effect": fidelity_cells(results_dir)}}


def update(results_dir: Path = RESULTS, root: Path = Path("."), check: bool = False) -> int:
    """Rewrite (or with `check`, only compare) every block; 0 when all were up to date or are now."""
    worst = 0
    for path, found in blocks(results_dir).items():
        worst = max(worst, replace_blocks(root / path, found, check=check))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.report.docs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if a rendered block is not up to date")
    check = ap.parse_args(argv).check
    try:
        return update(check=check)
    except CheckpointError as e:  # a damaged results file: one line that names it
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
