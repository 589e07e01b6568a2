"""Headline results: saved from run folders, rendered into the README by a script.

    python -m lvae.results save RUN_DIR NAME [--iw-samples K] [--command "..."]
        evaluates RUN_DIR and writes results/NAME.json (the evaluate JSON, training time,
        epochs, hardware, command) and results/NAME.pt (config + weights, <= 10 MB)
    python -m lvae.results table [--check]
        renders every results/*.json into README.md between the results markers, and the
        paper's verdict table (lvae.claims, from results/paper/*.json) between the claims markers

No number in the README's results section is typed by hand: each comes from a JSON file
that a command wrote.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch

from lvae import checkpoint as ckpt
from lvae.config import ConfigError, RunConfig, validate
from lvae.runfiles import DATA_ERRORS, read_json, reading

RESULTS = Path("results")
README = Path("README.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"
CLAIMS_START, CLAIMS_END = "<!-- claims:start -->", "<!-- claims:end -->"
HEADLINE = ("seed-lvae", "seed-vae")  # the paper's comparison lives in results/paper (lvae.paper, lvae.claims)
FASHION = ("fashion-seed-lvae", "fashion-paper-lvae")  # `make fashion`: the seed and paper recipes on Fashion-MNIST
MAX_BYTES = 10 * 2**20


# ----------------------------------------------------------------------------- saving


def training_summary(run_dir: Path) -> dict[str, Any]:
    """Epochs trained and seconds spent in training steps (the per-epoch test ELBO excluded)."""
    from lvae.training import read_jsonl

    rows = read_jsonl(Path(run_dir) / "epochs.jsonl")
    return {"epochs": len(rows), "train_seconds": sum(r["seconds"] for r in rows),
            "test_elbo_per_epoch": [r["elbo"] for r in rows], "seconds_per_epoch": [r["seconds"] for r in rows]}


def save_weights(cfg: RunConfig, model: torch.nn.Module, path: Path) -> None:
    """Config + weights; float32 if that fits in 10 MB, else float16 (cast back on load)."""
    sd = model.state_dict()
    dtype = "float32"
    if sum(t.numel() * t.element_size() for t in sd.values()) > MAX_BYTES * 0.95:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
        dtype = "float16"
    ckpt.save_atomic({"config": json.loads(json.dumps(cfg.to_dict())), "model": sd, "dtype": dtype}, path)


def load_model(path: Path):
    """(RunConfig, model in eval mode, float32) from a results/NAME.pt file."""
    from lvae.model import build_model

    sd = ckpt.load(path)
    try:
        cfg = RunConfig.from_dict(sd["config"])
        validate(cfg)  # a damaged size (a width of 10**12) is refused before a model is built from it
        model = build_model(cfg.model_kind, cfg.model)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd["model"].items()})
    except (ConfigError, *DATA_ERRORS, RuntimeError) as e:  # files older than the digest can be damaged unseen
        raise ckpt.CheckpointError(f"{path}: not a weights file that this version of lvae reads ({type(e).__name__}: "
                                   f"{ckpt.first_line(e)})") from None
    ckpt.non_finite_weights(sd["model"], path)
    return cfg, model.eval()


def save_result(run_dir: Path, name: str, iw_samples: int, command: str, chunk: int | None = None, limit: int | None = None,
                out_dir: Path = RESULTS, progress: bool = True, data_root: Path | None = None) -> dict[str, Any]:
    from lvae.evaluation import evaluate_run

    cfg, model = ckpt.load_run(run_dir)
    result = evaluate_run(run_dir, iw_samples=iw_samples, chunk=chunk, limit=limit, progress=progress, data_root=data_root)
    result.update(name=name, command=command, training=training_summary(run_dir), config_dict=cfg.to_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt.write_atomic(out_dir / f"{name}.json", lambda f: f.write((json.dumps(result, indent=1) + "\n").encode()))
    save_weights(cfg, model, out_dir / f"{name}.pt")
    return result


# ----------------------------------------------------------------------------- rendering


def _fmt_list(xs: list[float], digits: int = 1) -> str:
    return " / ".join(f"{x:.{digits}f}" for x in xs)


def _judged(r: dict[str, Any], key: str, fmt: str) -> str:
    """A sample-quality number, or why there is none (the digit classifier does not judge clothes)."""
    return format(r[key], fmt) if key in r else "n/a (digits only)"


def trained_epochs(r: dict[str, Any]) -> tuple[int, int]:
    """(epochs trained, epochs its config asked for): fewer trained than planned is a partial run."""
    trained = r["training"]["epochs"]
    return trained, r.get("config_dict", {}).get("train", {}).get("epochs", trained)


def epochs_cell(r: dict[str, Any]) -> str:
    trained, planned = trained_epochs(r)
    return str(trained) if trained >= planned else f"{trained} of {planned} (**partial**)"


def headline_table(rows: list[dict[str, Any]]) -> str:
    head = ("| run | model | likelihood | epochs | train time | test ELBO | NLL (IW) | K | KL per layer (bottom → top) "
            "| active units | class KL to uniform | FID_MNIST |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        t = r["training"]
        lines.append(
            f"| `{r['name']}` | {r['model_kind']} | {r['likelihood']} | {epochs_cell(r)} | {t['train_seconds'] / 60:.1f} min "
            f"| {r['elbo']:.2f} | **{r['nll']:.2f}** ± {r['nll_stderr']:.2f} | {r['iw_samples']} | {_fmt_list(r['kl_per_layer'])} "
            f"| {' / '.join(f'{a}/{u}' for a, u in zip(r['active_units'], r['latent_units']))} "
            f"| {_judged(r, 'class_kl_to_uniform', '.4f')} | {_judged(r, 'fid_mnist', '.1f')} |")
    return "\n".join(lines)


def seed_study_table(study: dict[str, Any]) -> str:
    lines = [f"Each variant trains for the seed's 3 epochs (`scripts/seed_study.py`); class histograms and FID_MNIST use "
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
    lines = ["| row | change | epochs | train time | test ELBO | NLL (IW) | K | active units | kept? |", "|---|---|---|---|---|---|---|---|---|"]
    for r in abl["rows"]:
        lines.append(f"| `{r['name']}` | {r['what']} | {r['training']['epochs']} | {r['training']['train_seconds'] / 60:.1f} min "
                     f"| {r['elbo']:.2f} | {r['nll']:.2f} ± {r['nll_stderr']:.2f} | {r['iw_samples']} "
                     f"| {' / '.join(map(str, r['active_units']))} | {r.get('verdict', '')} |")
    return "\n".join(lines)


def bench_table(b: dict[str, Any]) -> str:
    """`make bench` as a table: each thread count's throughput and its fraction of the peak it measured."""
    if "runs" not in b:  # a bench from before thread counts were compared
        return single_bench_table(b)
    runs = b["runs"]
    peaks = ", ".join(f"{r['peak_gflops']:.1f} GFLOP/s with {r['threads']} thread(s)" for r in runs)
    head = "| workload | " + " | ".join(f"{r['threads']} thread(s) | of peak" for r in runs) + " | goal | faster |"
    lines = [f"Measured fp32 matmul peak ({b['hardware']['cpu']}): **{peaks}**. Each workload runs in its own process, "
             "once per thread count; its fraction is of the peak with the same threads.", "", head,
             "|---|" + "---|---|" * len(runs) + "---|---|"]
    for i, row in enumerate(runs[0]["rows"]):
        cells = []
        for r in runs:
            x = r["rows"][i]
            rate, unit = _throughput(x)
            cells.append(f"{rate:.0f} {unit} | {100 * x['ratio']:.0f} %")
        goal = f"≥ {100 * row['goal']:.0f} %" if row.get("goal") else ""
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {goal} | {b['faster_threads'][row['name']]} thread(s) |")
    cores = b["hardware"]["cores"]
    slower = sorted(name for name, n in b["faster_threads"].items() if n != cores)
    lines += ["", f"Every command uses torch's default thread count, one per core ({cores} here): "
              + ("not measured in this run." if cores not in [r["threads"] for r in runs] else
                 "the faster column for every workload on this machine." if not slower else
                 f"**slower here for {', '.join(slower)}**; set `OMP_NUM_THREADS` to the faster count for those.")]
    return "\n".join(lines)


def single_bench_table(b: dict[str, Any]) -> str:
    lines = [f"Measured fp32 matmul peak: **{b['peak_gflops']:.1f} GFLOP/s** ({b['hardware']['threads']} threads, {b['hardware']['cpu']}).",
             "", "| workload | throughput | time | GFLOP/s | of peak | goal | peak memory |", "|---|---|---|---|---|---|---|"]
    for r in b["rows"]:
        goal = f"≥ {100 * r['goal']:.0f} %" if r.get("goal") else ""
        rate, unit = _throughput(r)
        lines.append(f"| {r['name']} | {rate:.0f} {unit} | {r['time_s']:.2f} s {r['time_what']} | {r['gflops']:.1f} "
                     f"| {100 * r['ratio']:.0f} % | {goal} | {r['peak_mb']:.0f} MB |")
    return "\n".join(lines)


def _parallel_table(b: dict[str, Any]) -> str:
    from lvae.bench_parallel import table

    return table(b)


def _compare_table(b: dict[str, Any]) -> str:
    from lvae.bench_compare import table

    return table(b)


def _throughput(row: dict[str, Any]) -> tuple[float, str]:
    """A bench row's rate and its unit (rows written before `unit` existed held IW rates as samples_per_s)."""
    if "unit" in row:
        return row["throughput"], row["unit"]
    if "samples_per_s" in row:
        return row["samples_per_s"], "importance samples/s"
    return row["images_per_s"], "images/s"


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
    out = [f"- `{r['name']}` class KL to uniform ≤ 0.02 nats: {r['class_kl_to_uniform']:.4f}: "
           f"**{'met' if r['class_kl_to_uniform'] <= 0.02 else 'not met'}**." for r in rows if "class_kl_to_uniform" in r]
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


RESULT = "a result lvae wrote (python -m lvae.results save writes one)"


def load_rows(results_dir: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The saved results among `names`, in that order; each is checked by rendering it alone, so a damaged one is named."""
    rows = []
    for path in (results_dir / f"{n}.json" for n in names):
        if path.exists():
            r = read_json(path, RESULT)
            with reading(path, RESULT, "restore it, or save the result again"):
                _render_alone(r)
            rows.append(r)
    return rows


def _render_alone(r: dict[str, Any]) -> str:
    """Everything `render` writes about one result: what a damaged file breaks fails here, where the file is known."""
    return "\n".join([headline_table([r]), top_latent_note([r]), fashion_intro([r]), *targets([r]), f"`{r['name']}`: `{r['command']}`"])


def render(results_dir: Path = RESULTS) -> str:
    """The markdown that goes between the README's results markers."""
    parts = []
    rows = load_rows(results_dir, HEADLINE)
    if rows:
        parts += ["Test-set numbers in nats per image (`python -m lvae evaluate`; `seed` runs score the Gaussian "
                  "(MSE) density of the grey levels). Measured on: " + "; ".join(
                      sorted({f"{hardware_phrase(r['hardware'])}" for r in rows})) + ". Train time counts training steps only "
                  "(the per-epoch test ELBO excluded); other jobs shared the CPU.",
                  "", headline_table(rows), "", top_latent_note(rows), "", "Commands:", ""]
        parts += [f"- `{r['name']}`: `{r['command']}`" for r in rows]
        parts += ["", *targets(rows)]
    fashion = load_rows(results_dir, FASHION)
    if fashion:
        parts += ["", "### Fashion-MNIST", "", fashion_intro(fashion), "", headline_table(fashion), "",
                  "Commands (`make fashion`):", "", *[f"- `{r['name']}`: `{r['command']}`" for r in fashion], "",
                  "![Fashion-MNIST samples](figures/fashion_samples.png)"]
    for fname, title, fn in (("paper-ablations.json", "Ablations on the `paper` LVAE", ablation_table),
                             ("seed-study.json", "The seed's class imbalance (\"mode collapse\")", seed_study_table),
                             ("bench.json", "Speed (`make bench`)", bench_table),
                             ("bench-parallel.json", "Threads or processes (`python -m lvae.bench_parallel`)", _parallel_table),
                             ("bench-compare.json", "What the speed changes bought (`make bench-compare`)", _compare_table)):
        path = results_dir / fname
        if path.exists():
            data = read_json(path, RESULT)
            with reading(path, RESULT, "restore it, or run the command that writes it again"):
                parts += ["", f"### {title}", ""]
                if data.get("note"):
                    parts += [str(data["note"]), ""]
                parts.append(fn(data))
    return "\n".join(parts) if parts else "(no results yet: see `python -m lvae.results save`)"


def sections(results_dir: Path = RESULTS) -> dict[tuple[str, str], str]:
    """README blocks this module renders: {(start marker, end marker): markdown}."""
    from lvae import claims

    return {(START, END): render(results_dir), (CLAIMS_START, CLAIMS_END): claims.render(results_dir)}


def rendered_readme(text: str, results_dir: Path = RESULTS) -> str:
    for (start, end), body in sections(results_dir).items():
        if start not in text or end not in text:
            raise SystemExit(f"error: the README has no {start} ... {end} section")
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)
    return text


def update_readme(readme: Path = README, results_dir: Path = RESULTS) -> bool:
    """Rewrite the results and claims sections; True if the file changed."""
    text = readme.read_text()
    new = rendered_readme(text, results_dir)
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lvae.results", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("run_dir", type=Path)
    s.add_argument("name")
    s.add_argument("--iw-samples", type=int, default=1000)
    s.add_argument("--chunk", type=int)
    s.add_argument("--limit", type=int)
    s.add_argument("--command", required=True, help="the training command, recorded in the JSON")
    t = sub.add_parser("table")
    t.add_argument("--check", action="store_true", help="fail if the README is not up to date")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "save":
            r = save_result(a.run_dir, a.name, a.iw_samples, a.command, a.chunk, a.limit)
            print(f"wrote {RESULTS / a.name}.json and .pt: NLL {r['nll']:.2f} ± {r['nll_stderr']:.2f} (K={r['iw_samples']})")
        elif a.check:
            if _stale():
                print("README results section is out of date: run make results-table", file=sys.stderr)
                return 1
        else:
            print("README.md updated" if update_readme() else "README.md already up to date")
    except ckpt.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _stale() -> bool:
    text = README.read_text()
    return rendered_readme(text) != text


if __name__ == "__main__":
    sys.exit(main())
