"""The claims table (docs/claims.md): each claim of the paper and of the seed README, beside our
measurement and a verdict.

Every number comes from a results JSON (`results/paper/*.json` from `make paper`,
`results/seed-*.json` from `python -m lvae.results save`). Every verdict, numeric targets
included, comes from one rule (`lvae.experiments.effects.verdict`): reproduced when the 95 % interval lies
wholly on the claimed side, reversed when it lies wholly on the other, else no significant
difference. Comparisons between trained models pair the runs image by image, seed by seed, and
their interval includes the spread across training seeds (`lvae.experiments.effects.paired_effect`); they
give no verdict below three seeds per arm. `python -m lvae.report.docs` (`make results-table`) renders the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lvae.experiments import paper
from lvae.runfiles import read_json, reading
from lvae.experiments.effects import MIN_SEEDS, REPRODUCED, Effect, known_effect, paired_effect, seed_effect, tally, verdict

# Sønderby et al. (2016), MNIST, 5 stochastic layers, 5000 importance samples (their table 1; table 2 is OMNIGLOT and NORB).
PAPER_LVAE_NLL = 82.12
PAPER_LVAE_FINETUNED_NLL = 81.84
PAPER_LVAE_FINETUNED_IW_NLL = 81.74
PAPER_BEST_TARGET_NLL = PAPER_LVAE_FINETUNED_IW_NLL  # `make paper-best` is to beat the paper's best MNIST number
COLLAPSED = 0.1  # a layer with fewer than 10 % of its units active has collapsed
KL_ACTIVE = 0.01  # nats: a unit whose KL, averaged over the test images, exceeds this carries information of its own
ACTIVE_MEASURES = (
    "by covariance: a unit whose posterior mean moves with the input (Cov_x E_q[z_u] > 0.01), which also counts a unit "
    "that copies the layer above and so costs no KL",
    f"by KL: a unit whose posterior differs from its prior by more than {KL_ACTIVE} nats on average over the test images, "
    "that is, one that carries information about x itself",
)
CLASS_KL_UNEVEN = 0.02  # nats: above this, prior samples' digit classes are uneven
RESULT = "a result lvae wrote"

Run = dict[str, Any]
Runs = dict[int, Run]  # by training seed


@dataclass
class Claim:
    source: str  # "paper", "seed README" or "this repo"
    claim: str
    measured: str
    verdict: str


# ----------------------------------------------------------------------------- per-image differences


def nll_differences(a: Run, b: Run, key: str = "per_image_log_px") -> list[float]:
    """NLL(a) - NLL(b) image by image (from each image's saved log p(x) estimate)."""
    pa, pb = a.get(key), b.get(key)
    if not pa or not pb or len(pa) != len(pb):
        raise KeyError(f"{a.get('name')} and {b.get('name')} have no per-image {key} over the same images")
    return [y - x for x, y in zip(pa, pb)]


def bound_gaps(r: Run) -> list[float]:
    """Each image's log p(x) - ELBO: how far the bound it was trained on lies below its likelihood."""
    return [lp - e for lp, e in zip(r["per_image_log_px"], r["per_image_elbo"])]


def paired(a: Runs, b: Runs, differences: Callable[[Run, Run], list[float]] = nll_differences) -> Effect | None:
    """The seed-aware paired effect over the seeds both arms have; None when they share none."""
    seeds = sorted(set(a) & set(b))
    return paired_effect([differences(a[s], b[s]) for s in seeds]) if seeds else None


def judged(effect: Effect | None, claimed_sign: int = -1) -> str:
    return "not measured yet" if effect is None else verdict(effect, claimed_sign, MIN_SEEDS)


# ----------------------------------------------------------------------------- the paper's claims


def _sweep(results: dict[str, Run]) -> dict[tuple[str, int], Runs]:
    return {(v, d): runs for (g, v, d), runs in paper.arms(results).items() if g == "sweep"}


def _beats(results: dict[str, Run], better: str, worse: str, claim: str, depths: tuple[int, ...] = paper.DEPTHS,
           differences: Callable[[Run, Run], list[float]] = nll_differences, what: str = "NLL") -> Claim:
    """Variant `better` has the lower `what` than `worse` at each depth: a verdict per depth, counted in the row."""
    sweep = _sweep(results)
    effects = {d: paired(sweep.get((better, d), {}), sweep.get((worse, d), {}), differences) for d in sorted(depths)}
    verdicts = {d: judged(e) for d, e in effects.items()}
    a, b = paper.VARIANTS[better].label, paper.VARIANTS[worse].label
    measured = "; ".join(f"L={d}: {e.describe()} → {verdicts[d]}" if e else f"L={d}: not run yet" for d, e in effects.items())
    return Claim("paper", claim, f"{what}({a}) − {what}({b}), nats, 95 % interval: {measured}", tally(verdicts, a, b))


def _gap_diff(a: Run, b: Run) -> list[float]:
    """Bound gap of a minus bound gap of b, image by image (a tighter bound for a is negative)."""
    return [x - y for x, y in zip(bound_gaps(a), bound_gaps(b))]


def _depth_gain(results: dict[str, Run]) -> Claim:
    """The paper's depth figure: adding stochastic layers helps the ladder more than the VAE."""
    claim = "Stacking layers helps the ladder more than the VAE (NLL gain from L = 1 to L = 5, both BN + WU)"
    sweep = _sweep(results)
    lo, hi = min(paper.DEPTHS), max(paper.DEPTHS)
    arms = [sweep.get((v, d), {}) for v in ("lvae-bn-wu", "vae-bn-wu") for d in (hi, lo)]
    seeds = sorted(set.intersection(*(set(a) for a in arms)))
    if not seeds:
        return Claim("paper", claim, f"needs L = {lo} and L = {hi} of both models with a common seed", "not measured yet")
    # per image: (NLL_L5 - NLL_L1) of the ladder minus the same for the VAE; negative: depth helps the ladder more
    rows = []
    for s in seeds:
        l5, l1, v5, v1 = (a[s] for a in arms)
        rows.append([x - y for x, y in zip(nll_differences(l5, l1), nll_differences(v5, v1))])
    effect = paired_effect(rows)
    return Claim("paper", claim, f"[NLL(L=5) − NLL(L=1)] of the ladder minus that of the VAE: {effect.describe()}", judged(effect))


def kl_active_units(r: Run) -> list[int] | None:
    """Units per layer whose KL, averaged over the test images, exceeds KL_ACTIVE nats: from the final evaluation's
    `kl_units`, else the last epoch's; None when the run has neither."""
    units = r.get("kl_units") or (r.get("per_epoch", {}).get("kl_units") or [None])[-1]
    return None if units is None else [sum(1 for u in layer if u > KL_ACTIVE) for layer in units]


def cov_active_units(r: Run) -> list[int]:
    return r["active_units"]


def _collapsed(r: Run, count: Callable[[Run], list[int] | None] = cov_active_units) -> list[int] | None:
    """Layers with fewer than COLLAPSED of their units active (counted by `count`); None where it is not recorded."""
    active = count(r)
    return None if active is None else [k for k, (a, u) in enumerate(zip(active, r["latent_units"])) if a < COLLAPSED * u]


def _upper_units(results: dict[str, Run], group: str, epochs_note: str) -> Claim:
    """The ladder keeps more active units in z1 … z4 than the VAE, seed by seed."""
    claim = "The ladder keeps more active units in its upper layers (z1 … z4)"
    arms = paper.arms(results)
    lv, va = arms.get((group, "lvae-bn-wu", 5), {}), arms.get((group, "vae-bn-wu", 5), {})
    seeds = sorted(set(lv) & set(va))
    if len(seeds) < 2:
        return Claim("paper", claim, f"needs the 5-layer pair ({group} runs) at {MIN_SEEDS} seeds; {len(seeds)} so far", "not measured yet")
    measured, verdicts = [], []
    for how, count in (("covariance", cov_active_units), (f"KL > {KL_ACTIVE} nats", kl_active_units)):
        if any(count(r[s]) is None for r in (lv, va) for s in seeds):
            measured.append(f"by {how}: not recorded in these runs")
            verdicts.append(f"not measured by {how}")
            continue
        upper = lambda r: sum(count(r)[1:])  # noqa: E731
        effect = seed_effect([upper(lv[s]) - upper(va[s]) for s in seeds])
        counts = ", ".join(f"seed {s}: LVAE {upper(lv[s])}, VAE {upper(va[s])}" for s in seeds)
        measured.append(f"by {how} ({counts}): LVAE − VAE {effect.describe(1)}")
        verdicts.append(f"{judged(effect, claimed_sign=+1)} by {how}")
    return Claim("paper", claim, f"{epochs_note}, active units in z1 … z4 " + "; ".join(measured), "; ".join(verdicts))


def _collapse(results: dict[str, Run]) -> Claim:
    """The 5-layer VAE's upper layers collapse, and batch norm and warm-up hold some of them open (sweep, L = 5)."""
    claim = "The deep VAE's upper layers collapse (less so with BN and WU; the ladder's least)"
    sweep = _sweep(results)
    runs = {v: sweep.get((v, 5), {}) for v in paper.VARIANTS}
    seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
    if not seeds:
        return Claim("paper", claim, "the four 5-layer sweep runs do not share a finished seed yet", "not measured yet")
    measured, results_ = [], []
    for how, count in (("covariance", cov_active_units), (f"KL > {KL_ACTIVE} nats", kl_active_units)):
        if any(_collapsed(r[s], count) is None for r in runs.values() for s in seeds):
            measured.append(f"by {how}: not recorded in these runs")
            results_.append(f"not measured by {how}")
            continue
        held = []
        for s in seeds:
            collapsed = {v: _collapsed(r[s], count) for v, r in runs.items()}
            counts = [len(collapsed[v]) for v in paper.VARIANTS]
            held.append({3, 4} <= set(collapsed["vae"]) and counts == sorted(counts, reverse=True))
        seed0 = {v: _collapsed(r[seeds[0]], count) for v, r in runs.items()}
        layers = "; ".join(f"{paper.VARIANTS[v].label}: {', '.join(f'z{k}' for k in c) or 'none'}" for v, c in seed0.items())
        measured.append(f"by {how}, seed {seeds[0]}: {layers}; the pattern holds at {sum(held)} of {len(seeds)} seeds")
        if len(seeds) < MIN_SEEDS:
            results_.append(f"not measured yet ({len(seeds)} of {MIN_SEEDS} seeds)")
        else:
            results_.append((REPRODUCED if all(held) else f"not reproduced at {held.count(False)} of {len(seeds)} seeds") + f" by {how}")
    return Claim("paper", claim, f"layers with < {COLLAPSED:.0%} of units active, 5 layers, " + "; ".join(measured),
                 "; ".join(dict.fromkeys(results_)))


def _long_pair(results: dict[str, Run]) -> tuple[Runs, Runs]:
    arms = paper.arms(results)
    return arms.get(("long", "lvae-bn-wu", 5), {}), arms.get(("long", "vae-bn-wu", 5), {})


def budget_effects(results: dict[str, Run]) -> dict[int, tuple[Effect | None, Effect | None]]:
    """{kept epoch: (NLL effect, ELBO effect)} of the long pair, ladder minus VAE, seed-aware."""
    lv, va = _long_pair(results)
    seeds = sorted(set(lv) & set(va))
    epochs = sorted({int(e) for s in seeds for e in lv[s].get("budget_curve", {})})
    out = {}
    for e in epochs:
        at = lambda r: r["budget_curve"].get(str(e)) if "budget_curve" in r else None  # noqa: E731
        pairs = [(at(lv[s]), at(va[s])) for s in seeds if at(lv[s]) and at(va[s])]
        if not pairs:
            continue
        nll = paired_effect([nll_differences(a, b) for a, b in pairs])
        elbo = paired_effect([[y - x for x, y in zip(a["per_image_elbo"], b["per_image_elbo"])] for a, b in pairs])
        out[e] = (nll, elbo)  # -ELBO(ladder) - (-ELBO(VAE)) per image
    return out


def _advantage_grows(results: dict[str, Run]) -> Claim:
    claim = "The ladder's advantage grows with training (5 layers, BN + WU; NLL gap at the last kept epoch minus at the first)"
    lv, va = _long_pair(results)
    seeds = sorted(s for s in set(lv) & set(va) if "budget_curve" in lv[s] and "budget_curve" in va[s])
    if not seeds:
        return Claim("paper", claim, f"the long pair ({paper.LONG.epochs} epochs, `make paper`) has not finished a seed yet", "not measured yet")
    kept = sorted(set.intersection(*({int(e) for e in r[s]["budget_curve"]} for r in (lv, va) for s in seeds)))
    first, last = str(kept[0]), str(kept[-1])
    rows = [[x - y for x, y in zip(nll_differences(lv[s]["budget_curve"][last], va[s]["budget_curve"][last]),
                                   nll_differences(lv[s]["budget_curve"][first], va[s]["budget_curve"][first]))] for s in seeds]
    effect = paired_effect(rows)
    curve = "; ".join(f"epoch {e}: {n.describe()}" for e, (n, _) in budget_effects(results).items() if n)
    return Claim("paper", claim, f"NLL(LVAE) − NLL(VAE) by epoch: {curve}. Change from epoch {first} to {last}: {effect.describe()}",
                 judged(effect))


def _long_beats(results: dict[str, Run]) -> Claim:
    claim = "At the long budget, the 5-layer ladder beats the VAE (both BN + WU)"
    lv, va = _long_pair(results)
    effect = paired(lv, va)
    if effect is None:
        return Claim("paper", claim, "the long pair has not finished a seed yet", "not measured yet")
    measured = f"{lv[min(lv)]['epochs']} epochs, K = {lv[min(lv)]['iw_samples']}, NLL(LVAE) − NLL(VAE): {effect.describe()}"
    if 0 in lv and 0 in va and "headline" in lv[0] and "headline" in va[0]:
        h = paired_effect([nll_differences(lv[0]["headline"], va[0]["headline"])])  # one seed: image noise only
        measured += (f"; seed 0 at K = {lv[0]['headline']['iw_samples']}: LVAE {lv[0]['headline']['nll']:.2f}, "
                     f"VAE {va[0]['headline']['nll']:.2f}, paired {h.describe()}")
    return Claim("paper", claim, measured, judged(effect))


def _reaches_paper_number(results: dict[str, Run]) -> Claim:
    claim = (f"A 5-layer LVAE reaches {PAPER_LVAE_NLL} nats, K = 5000 ({PAPER_LVAE_FINETUNED_NLL} after fine-tuning, "
             f"{PAPER_LVAE_FINETUNED_IW_NLL} fine-tuned with the IW bound)")
    lv, _ = _long_pair(results)
    head = lv.get(0, {}).get("headline")
    if not head:
        return Claim("paper", claim, "the long seed-0 ladder has not been scored with K = 5000 yet", "not measured yet")
    r = lv[0]
    effect = known_effect(head["nll"] - PAPER_LVAE_NLL, head["nll_stderr"])
    measured = (f"{head['nll']:.2f} ± {head['nll_stderr']:.2f} nats (K = {head['iw_samples']}, {r['epochs']} epochs, seed 0, "
                f"{r['train_seconds'] / 60:.0f} min on {r['train_threads']} CPU thread(s)"
                f"{', one uninterrupted command' if r['uninterrupted'] else ', RESUMED: not a headline'}); "
                f"minus {PAPER_LVAE_NLL}: {effect.describe()}")
    return Claim("paper", claim, measured, verdict(effect, claimed_sign=-1))


def paper_claims(results: dict[str, Run]) -> list[Claim]:
    ladder_depths = tuple(d for d in paper.DEPTHS if d > 1)  # one stochastic layer: nothing to merge, the ladder is the VAE
    return [
        _beats(results, "lvae-bn-wu", "vae-bn-wu", "The ladder beats the VAE (both with BN + WU) at every depth from 2 to 5", ladder_depths),
        _beats(results, "lvae-bn-wu", "vae-bn-wu", "The ladder's bound is tighter: its per-image gap log p(x) − ELBO is smaller than the VAE's",
               ladder_depths, _gap_diff, "gap"),
        _beats(results, "vae-bn", "vae", "Batch norm helps the VAE"),
        _beats(results, "vae-bn-wu", "vae-bn", "KL warm-up helps the VAE (with BN)"),
        _depth_gain(results),
        _upper_units(results, "sweep", f"5 layers, {paper.SWEEP.epochs} epochs"),
        _collapse(results),
        _long_beats(results),
        _advantage_grows(results),
        _reaches_paper_number(results),
    ]


def paper_best_claims(results_dir: Path) -> list[Claim]:
    """`make paper-best` (results/paper-best.json) against the paper's best number, and its recipe on the
    paper's own widths (results/paper-best-narrow.json) beside it, each where it exists."""
    from lvae.experiments.paper_best import BUDGET_CORE_HOURS

    rows = []
    for name, what in (("paper-best", "the 5-layer ladder, twice as wide, in three stages"),
                       ("paper-best-narrow", "the same recipe on the paper's own widths")):
        claim = (f"`{name}` ({what}) reaches ≤ {PAPER_BEST_TARGET_NLL} nats, K = 5000, from one command training "
                 f"≤ {BUDGET_CORE_HOURS:.0f} CPU-core-hours")
        path = results_dir / f"{name}.json"
        if not path.is_file():
            if name == "paper-best":
                rows.append(Claim("this repo", claim, f"not trained yet (`make paper-best`){_first_recipe(results_dir)}", "not measured yet"))
            continue
        r = read_json(path, RESULT)
        with reading(path, RESULT, "restore it, or run make paper-best again"):
            rows.append(_paper_best_claim(claim, r))
    return rows


def _first_recipe(results_dir: Path) -> str:
    """The first recipe's result (results/paper-best-v1.json), shown where the current one has not run."""
    path = results_dir / "paper-best-v1.json"
    if not path.is_file():
        return ""
    r = read_json(path, RESULT)
    with reading(path, RESULT, "restore it from git"):
        return (f"; the first recipe (config `paper-best-v1`, one stage, 160 epochs) reached {r['nll']:.2f} ± {r['nll_stderr']:.2f} "
                f"in {r['train_wall_minutes']:.0f} min on {r['train_threads']} threads")


def _paper_best_claim(claim: str, r: Run) -> Claim:
    effect = known_effect(r["nll"] - PAPER_BEST_TARGET_NLL, r["nll_stderr"])
    stages = []
    for s in r["stages"]:
        gain = s["gain_over_previous_stage"]
        stages.append(f"{s['stage']} {s['epochs']} epochs {s['nll_k1000']:.2f}"
                      + (f" ({gain['nll_change']:+.3f} ± {gain['stderr']:.3f} paired)" if gain else ""))
    how = "each stage one uninterrupted `train` command" if r["uninterrupted"] else \
        f"resumed exactly ({sum(len(s['commands']) for s in r['stages'])} train commands for {len(r['stages'])} stages)"
    how += f", {_stage_code(r['stages'])}"
    measured = (f"{r['nll']:.2f} ± {r['nll_stderr']:.2f} nats (K = {r['iw_samples']}; {r['cpu_core_hours']:.2f} CPU-core-hours, "
                f"{r['train_wall_minutes']:.0f} min wall clock on {r['train_threads']} thread(s), {how}, one training seed); "
                f"each stage at K = {r['stage_score_iw_samples']}: {', '.join(stages)}; minus {PAPER_BEST_TARGET_NLL}: {effect.describe()}")
    result = verdict(effect) if r["within_budget"] else \
        f"not met: training took {r['cpu_core_hours']:.2f} CPU-core-hours, over the {r['budget_core_hours']:.0f}-hour budget"
    return Claim("this repo", claim, measured, result)


def _stage_code(stages: list[dict]) -> str:
    """Which commits trained the stages: a recipe can span a fix between stages, and the table should say so."""
    commits = [c for s in stages for c in s.get("code", [None] * len(s["commands"]))]
    known = sorted({c for c in commits if c})
    if not known:
        return "its commits not recorded (a runner older than dd49ef6)"
    return f"from {', '.join(known)}" + (", some attempts' commits not recorded" if None in commits else "")


def factor_claims(results_dir: Path) -> list[Claim]:
    """The factor study's row: which of the paper code's eight details carry the ladder's advantage (factor_effects)."""
    from lvae.experiments import factor_effects  # it builds on this module's neighbours, not on the claims

    runs, base = factor_effects.load(results_dir / "factors", results_dir / "paper")
    arms = [factor_effects.arm_effect(f, runs, base) for f in factor_effects.FACTORS]
    measured, judged = factor_effects.claim_text(arms, factor_effects.interaction(runs, base))
    return [Claim("this repo", "The ladder's advantage over the VAE (5 layers, BN + WU) needs each of the paper code's eight "
                  "details (docs/fidelity.md rows 1–8)", measured + " (docs: the factor study below)", judged)]


SEED_RUNS = {0: "{}", 1: "{}-s1", 2: "{}-s2"}  # training seed -> results/NAME.json of the seed config (make seed-seeds)


def seed_claims(results_dir: Path) -> list[Claim]:
    """The seed README's claims, judged on the `seed` config's LVAE and top-latent VAE at every training seed saved
    (results/seed-{lvae,vae}.json is seed 0; make seed-seeds adds seeds 1 and 2), by the one rule: a per-seed number
    over the seeds (t-interval, S - 1 degrees of freedom), no verdict below three seeds."""
    found = {s: [results_dir / f"{name.format(m)}.json" for m in ("seed-lvae", "seed-vae")] for s, name in SEED_RUNS.items()}
    found = {s: paths for s, paths in found.items() if all(p.is_file() for p in paths)}
    if not found:
        return [Claim("seed README", "(all)", f"needs {results_dir / 'seed-lvae.json'} and {results_dir / 'seed-vae.json'}", "not measured yet")]
    runs = {s: tuple(read_json(p, RESULT) for p in paths) for s, paths in found.items()}
    with reading(", ".join(str(p) for paths in found.values() for p in paths), RESULT, "restore it, or save the result again"):
        return _seed_claims(runs)


def _join(runs: list[Run], key: str, fmt: str) -> str:
    """One number of each seed's run, in seed order ("n/a" where a run lacks it)."""
    return ", ".join(format(r[key], fmt) if key in r else "n/a" for r in runs)


def _most_frequent(histogram: list[float], n: int = 3) -> list[int]:
    return sorted(range(10), key=histogram.__getitem__, reverse=True)[:n]


def _collapsed_note(seeds: list[int], runs: list[Run]) -> str:
    """Seeds whose ladder learnt nothing (every layer's KL below 0.1 nats: posterior collapse), said in the row."""
    dead = [s for s, r in zip(seeds, runs) if all(k < 0.1 for k in r.get("kl_per_layer", [1.0]))]
    return (f"; the LVAE of seed{'s' * (len(dead) > 1)} {', '.join(map(str, dead))} collapsed (every layer's KL below 0.1 nats, "
            f"its prior samples one image)") if dead else ""


def _over_seeds(values: list[float]) -> Effect:
    return seed_effect(values) if len(values) > 1 else known_effect(values[0], 0.0)


def _seed_text(effect: Effect, digits: int) -> str:
    """A per-seed number over seeds: mean and interval, or the one value where there is one seed (no interval to give)."""
    if effect.seeds == 1:
        return f"{effect.mean:+.{digits}f} (one seed: training noise not measured)"
    return f"{effect.mean:+.{digits}f} [{effect.low:+.{digits}f}, {effect.high:+.{digits}f}] ({effect.seeds} seeds, t-interval over seeds)"


def _seed_verdict(effect: Effect, claimed_sign: int = -1) -> str:
    return verdict(effect, claimed_sign, MIN_SEEDS)


def _seed_claims(runs: dict[int, tuple[Run, Run]]) -> list[Claim]:
    seeds = sorted(runs)
    lv, va = [runs[s][0] for s in seeds], [runs[s][1] for s in seeds]
    claims = []
    sharper = _over_seeds([l["fid_mnist"] - 0.9 * v["fid_mnist"] for l, v in zip(lv, va)])
    claims.append(Claim("seed README", "Ladder samples are readable where the (top-latent) VAE's are blurry averages",
                        f"FID_MNIST of 10,000 prior samples (lower is sharper and more varied), by seed: LVAE "
                        f"{_join(lv, 'fid_mnist', '.1f')}, VAE {_join(va, 'fid_mnist', '.1f')}; "
                        f"FID(LVAE) − 0.9 FID(VAE): {_seed_text(sharper, 1)}; judged: LVAE below 90 % of the VAE's"
                        f"{_collapsed_note(seeds, lv)}",
                        _seed_verdict(sharper)))
    if all("top_latent_kl_to_prior" in l for l in lv):
        units = lv[0]["latent_units"][-1]
        kl = _over_seeds([l["top_latent_kl_to_prior"] - 0.1 * units for l in lv])
        claims.append(Claim("seed README", "The top latent looks like N(0, I)",
                            f"KL(moment-matched aggregate posterior ‖ N(0, I)) of the LVAE's top latent over {units} units, by seed: "
                            f"{_join(lv, 'top_latent_kl_to_prior', '.3f')} nats (VAE: "
                            f"{_join(va, 'top_latent_kl_to_prior', '.3f')}); KL − 0.1 a unit: "
                            f"{_seed_text(kl, 3)}; judged: below 0.1 nats a unit", _seed_verdict(kl)))
    h = [sum(l["class_histogram"][d] for l in lv) / len(lv) for d in range(10)]
    order = sorted(range(10), key=h.__getitem__, reverse=True)
    over = [d for d in order if h[d] > 0.11]
    uneven_effect = _over_seeds([l["class_kl_to_uniform"] - CLASS_KL_UNEVEN for l in lv])
    uneven = _seed_verdict(uneven_effect, claimed_sign=+1)
    named = len({7, 9, 1} & set(order[:3]))
    tops = "; ".join(f"seed {s}: {', '.join(map(str, _most_frequent(l['class_histogram'])))}" for s, l in zip(seeds, lv))
    result = uneven if uneven != REPRODUCED or named >= 2 else f"no: uneven, but the most frequent are {', '.join(map(str, order[:3]))}"
    claims.append(Claim("seed README", "Samples over-represent some digits (7, 9, 1)",
                        f"LVAE prior samples, histogram averaged over seeds: digits above 11 %: "
                        f"{', '.join(f'{d} ({h[d]:.1%})' for d in over) or 'none'}; the three most frequent by seed: {tops}; "
                        f"class KL to uniform by seed {_join(lv, 'class_kl_to_uniform', '.4f')} nats, minus "
                        f"{CLASS_KL_UNEVEN}: {_seed_text(uneven_effect, 4)}; judged: above {CLASS_KL_UNEVEN} with 2 of 7, 9, 1 "
                        f"among the three most frequent of the averaged histogram", result))
    return claims


# ----------------------------------------------------------------------------- rendering


def summary(results_dir: Path = Path("results")) -> list[str]:
    """The claims table's verdicts, one line each: what the README shows."""
    results = paper.load_results(results_dir / "paper")
    return [f"- {c.claim}: **{c.verdict}**" for c in paper_claims(results) + paper_best_claims(results_dir)]


def render(results_dir: Path = Path("results"), studies: bool = True) -> str:
    """The claims table and its sweep and active-unit tables. `studies=False` leaves out the rows of this repo's own
    studies that grow while they run (the factor study): a notebook that shows the table stays true between its runs."""
    with reading(results_dir / "paper", "a folder of results lvae.experiments.paper wrote",
                 "restore the damaged file, or delete it and run make paper"):
        return _render(results_dir, paper.load_results(results_dir / "paper"), studies)


def _render(results_dir: Path, results: dict[str, Run], studies: bool = True) -> str:
    done = sum(1 for r in results.values() if r["group"] == "sweep")
    total = len(paper.DEPTHS) * len(paper.VARIANTS) * len(paper.SEEDS)
    long_done = sum(1 for r in results.values() if r["group"] == "long")
    lines = [
        f"From `make paper` (`results/paper/*.json`), set up as the paper's code trains (docs/fidelity.md): the depth sweep "
        f"trains each model for {paper.SWEEP.epochs} epochs (warm-up over {paper.SWEEP.warmup_epochs}) at {len(paper.SEEDS)} training seeds "
        f"and scores it with K = {paper.SWEEP.iw_samples}; the long pair trains for {paper.LONG.epochs} epochs, keeps its weights at epochs "
        f"{', '.join(map(str, paper.LONG.keep_epochs))} and scores each with K = {paper.LONG.iw_samples}, seed 0's last also with "
        f"K = {paper.LONG.headline_iw_samples}, all on the full binarized test set. Sweep runs finished: **{done} of {total}**; "
        f"long runs: **{long_done} of {2 * len(paper.SEEDS)}**"
        f"{'' if done == total and long_done == 2 * len(paper.SEEDS) else ' (partial: a comparison below three seeds per arm gets no verdict)'}. "
        "The VAE is `HierarchicalVAE`: the same stochastic layers, inferred bottom-up. Intervals are 95 %, paired image by image and "
        "seed by seed, and include the spread across training seeds (how: above this table). The seed README's claims are "
        "judged on the `seed` config as shipped (paper KL, 3 epochs; training seeds 0, 1, 2 from `make seed-seeds`: "
        "`results/seed-{lvae,vae}[-s1,-s2].json`), each by the same rule over its seeds.",
        "",
        "| source | claim | our measurement | verdict |",
        "|---|---|---|---|",
    ]
    for c in paper_claims(results) + paper_best_claims(results_dir) + (factor_claims(results_dir) if studies else []) + seed_claims(results_dir):
        lines.append(f"| {c.source} | {c.claim} | {c.measured} | **{c.verdict}** |")
    return "\n".join(lines + ["", *sweep_table(results), "", *active_table(results)])


def sweep_table(results: dict[str, Run]) -> list[str]:
    """Test NLL (K = 100) of every sweep arm, mean over seeds: variants as rows, depths as columns."""
    points = paper.depth_points(results)
    lines = ["Depth sweep, test NLL in nats (IW bound, K = 100; mean over seeds ± 95 % half-width over seeds, [seeds]; lower is better):", "",
             "| model | " + " | ".join(f"L = {d}" for d in sorted(paper.DEPTHS)) + " |", "|---|" + "---|" * len(paper.DEPTHS)]
    for v in paper.VARIANTS.values():
        row = points.get(v.label, {})
        cells = [f"{row[d][0]:.2f} ± {row[d][1]:.2f} [{row[d][2]}]" if d in row else "…" for d in sorted(paper.DEPTHS)]
        lines.append(f"| {v.label} | " + " | ".join(cells) + " |")
    return lines


def active_table(results: dict[str, Run]) -> list[str]:
    """The paper's table of active units per layer: the 5-layer sweep models and the long pair, mean over seeds."""
    rows = [(g, v, runs) for (g, v, d), runs in paper.arms(results).items() if d == 5]
    if not rows:
        return []
    sizes = next(iter(rows[0][2].values()))["latent_units"]
    lines = ["Active units per layer, 5 layers, mean over seeds, counted two ways: " + "; ".join(ACTIVE_MEASURES)
             + " (the covariance estimated without bias). Each cell: by covariance / by KL.", "",
             "| model | seeds | " + " | ".join(f"z{k} ({n})" for k, n in enumerate(sizes)) + " | total |", "|---|---|" + "---|" * (len(sizes) + 1)]
    order = {v: i for i, v in enumerate(paper.VARIANTS)}
    for g, v, runs in sorted(rows, key=lambda x: (x[0] == "long", order[x[1]])):
        cov = [sum(cov_active_units(r)[k] for r in runs.values()) / len(runs) for k in range(len(sizes))]
        by_kl = [kl_active_units(r) for r in runs.values()]
        kl = None if any(c is None for c in by_kl) else [sum(c[k] for c in by_kl) / len(runs) for k in range(len(sizes))]
        cell = lambda a, b: f"{a:.1f} / {b:.1f}" if b is not None else f"{a:.1f} / –"  # noqa: E731
        epochs = next(iter(runs.values()))["epochs"]
        lines.append(f"| {paper.VARIANTS[v].label} ({epochs} epochs) | {len(runs)} | "
                     + " | ".join(cell(c, kl[k] if kl else None) for k, c in enumerate(cov))
                     + f" | {cell(sum(cov), sum(kl) if kl else None)} |")
    return lines
