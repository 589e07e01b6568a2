"""`python -m lvae.experiments.paper` (`make paper`): the paper's MNIST experiments from one command.

Sønderby et al. (2016), MNIST: test log-likelihood against the number of stochastic
layers for four models with the same stochastic layers, and a long-trained 5-layer pair.

    depth sweep:  L = 5, 4, 3, 2, 1  x  {VAE, VAE + BN, VAE + BN + WU, LVAE + BN + WU}
                  x  SEEDS training seeds (the VAE is `HierarchicalVAE`; shallower models
                  keep the bottom L rungs of the `paper` config), SWEEP epochs each, K = 100
    long pair:    5-layer VAE + BN + WU and LVAE + BN + WU x SEEDS, LONG epochs each, weights
                  kept at LONG.keep_epochs and each scored with K = 1000; seed 0's last
                  epoch also with K = 5000 (the headline pair, scored image by image)

Every run is one `python -m lvae train` command, then `python -m lvae evaluate`; the
runner adds the per-epoch logs (train and test ELBO, test KL per unit) and a PCA of each
layer's posterior samples, and writes results/paper/NAME.json. Finished runs (their JSON
exists) are skipped; an unfinished one is resumed from its checkpoint with the same
settings, and its JSON then lists both commands, so a resumed run is never mistaken for
one uninterrupted command. Runs go in parallel, one thread each (`--jobs`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import torch

from lvae import checkpoint as ckpt
from lvae import flags
from lvae.config import named_config
from lvae.runfiles import read_json
from lvae.runlock import RunLocked, runner_lock

RESULTS = Path("results/paper")
RUNS = Path("runs/paper")
DEPTHS = (5, 4, 3, 2, 1)


@dataclass(frozen=True)
class Variant:
    """One of the paper's four models: which inference, batch norm, KL warm-up."""

    label: str
    model: str
    batch_norm: bool
    warmup: bool


VARIANTS = {
    "vae": Variant("VAE", "hvae", False, False),
    "vae-bn": Variant("VAE + BN", "hvae", True, False),
    "vae-bn-wu": Variant("VAE + BN + WU", "hvae", True, True),
    "lvae-bn-wu": Variant("LVAE + BN + WU", "lvae", True, True),
}


@dataclass(frozen=True)
class Budget:
    epochs: int
    warmup_epochs: int  # beta rises 0 -> 1 linearly over these epochs (the paper config's schedule)
    iw_samples: int
    keep_epochs: tuple[int, ...] = ()  # weights kept and scored at these epochs too (the budget curve)
    headline_iw_samples: int | None = None  # seed 0's last epoch is also scored with this K
    test_every: int = 1  # the per-epoch test ELBO every N epochs (kept and last ones always); training is the same whatever N


SWEEP = Budget(epochs=50, warmup_epochs=20, iw_samples=100)
# The long runs test every 10th epoch (seed 0 tested every epoch): the same training, ~35 min less per run on one core.
LONG = Budget(epochs=300, warmup_epochs=20, iw_samples=1000, keep_epochs=(25, 50, 100, 200, 300), headline_iw_samples=5000, test_every=10)
SEEDS = (0, 1, 2)
PAIR = ("lvae-bn-wu", "vae-bn-wu")  # the ladder and its baseline: same stochastic layers, batch norm and warm-up


@dataclass(frozen=True)
class Experiment:
    name: str
    group: str  # "sweep" or "long"
    variant: str
    depth: int
    budget: Budget
    seed: int = 0
    settings: tuple[str, ...] = ()  # FIELD=VALUE config settings on top of the variant's (`train --set`; the factor study's arms)

    def train_argv(self, run_dir: Path, extra: tuple[str, ...] = ()) -> list[str]:
        v = VARIANTS[self.variant]
        argv = ["train", "--config", "paper", "--model", v.model, "--depth", str(self.depth), "--seed", str(self.seed),
                "--epochs", str(self.budget.epochs), "--out", str(run_dir), "--no-progress", *extra]
        argv += ["--batch-norm"] if v.batch_norm else ["--no-batch-norm"]
        argv += ["--warmup-epochs", str(self.budget.warmup_epochs)] if v.warmup else ["--beta-schedule", "constant"]
        kept = [e for e in self.budget.keep_epochs if e <= self.budget.epochs]
        argv += ["--keep-epochs", *map(str, kept)] if kept else []
        argv += ["--test-every", str(self.budget.test_every)] if self.budget.test_every > 1 else []
        argv += [x for setting in self.settings for x in ("--set", setting)]
        return argv


def experiments(sweep: Budget = SWEEP, long: Budget = LONG, seeds: tuple[int, ...] = SEEDS) -> list[Experiment]:
    """In the order they run: the ladder and its baseline at every depth and seed (the claims
    table's comparisons), then the long pair, then the two other VAE variants."""
    def at(depth: int, variants) -> list[Experiment]:
        return [Experiment(f"sweep-L{depth}-{v}-s{s}", "sweep", v, depth, sweep, s) for s in seeds for v in variants]

    others = [v for v in VARIANTS if v not in PAIR]
    longs = [Experiment(f"long-{v}-s{s}", "long", v, 5, long, s) for s in seeds for v in PAIR]
    return [e for d in DEPTHS for e in at(d, PAIR)] + longs + [e for d in DEPTHS for e in at(d, others)]


def command(argv: list[str]) -> str:
    return "python -m lvae " + " ".join(argv)


# ----------------------------------------------------------------------------- time estimate


def step_seconds(exp: Experiment, steps: int = 5) -> float:
    """Seconds per training step on one thread, measured on random binary images."""
    from lvae.cli import build_parser, config_from_args
    from lvae.losses import compute_loss
    from lvae.training import make_optimizer
    from lvae.model import build_model

    cfg = config_from_args(build_parser().parse_args(exp.train_argv(Path("unused"))))
    torch.manual_seed(0)
    model = build_model(cfg.model_kind, cfg.model).train()
    opt = make_optimizer(model.parameters(), cfg.train.lr, torch.device("cpu"))
    x = torch.rand(cfg.train.batch_size, *cfg.model.image_shape).bernoulli()
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = compute_loss(model(x), x, "bernoulli", 1.0).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def estimate_seconds(exp: Experiment, iw_seconds_per_sample: float) -> float:
    """Training steps, the batch-norm recompute of each tested epoch (a forward pass over the training set:
    about a third of a training step's work per image), and every score the experiment makes."""
    b = exp.budget
    iterations = 60000 // 256 * b.epochs
    tested = sum(1 for e in range(1, b.epochs + 1) if e % b.test_every == 0 or e in b.keep_epochs or e == b.epochs)
    scores = b.iw_samples * (1 + len([e for e in b.keep_epochs if e < b.epochs]))
    scores += (b.headline_iw_samples or 0) if exp.seed == 0 else 0
    return iterations * step_seconds(exp) * (1 + tested / b.epochs / 3) + 10000 * scores * iw_seconds_per_sample


def iw_seconds_per_sample() -> float:
    """Seconds per importance sample (one thread), timed on an untrained 5-layer ladder."""
    from lvae.evaluation import iw_log_likelihood
    from lvae.model import build_model

    model = build_model("lvae", named_config("paper").model).eval()
    x = torch.rand(2, 1, 28, 28).bernoulli()
    t0 = time.perf_counter()
    iw_log_likelihood(model, x, 2000, "bernoulli")
    return (time.perf_counter() - t0) / 4000


# ----------------------------------------------------------------------------- one experiment


def finished_epochs(run_dir: Path) -> int:
    from lvae.training import read_jsonl

    return len(read_jsonl(run_dir / "epochs.jsonl"))


class Children:
    """The `python -m lvae` processes this runner has started and not yet reaped, and whether it is stopping.

    Why: each child runs in a session of its own (a Ctrl-C on the terminal reaches the runner only), so the
    runner alone decides what the child hears: SIGINT or SIGTERM is passed on once, the child stops where
    it can resume (a checkpoint, lvae.training), and the runner waits for it before it exits.
    """

    def __init__(self) -> None:
        self.live: set[subprocess.Popen] = set()
        self.stopping: int | None = None  # the signal that stopped the runner
        self.lock = threading.Lock()

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        with self.lock:
            if self.stopping is not None:
                raise RuntimeError(f"not started: the runner is stopping (signal {self.stopping})")
            proc = subprocess.Popen(args, start_new_session=True, **kwargs)
            self.live.add(proc)
            return proc

    def wait(self, proc: subprocess.Popen) -> int:
        try:
            return proc.wait()
        finally:
            with self.lock:
                self.live.discard(proc)

    def forward(self, signum: int, frame=None) -> None:
        """A signal handler: pass the signal to every child once; the threads waiting on them carry on."""
        with self.lock:
            first, self.stopping = self.stopping is None, signum
            for proc in self.live if first else ():
                proc.send_signal(signum)
        print(f"stopping: passed signal {signum} to {len(self.live)} running command(s); waiting for them to save and exit",
              file=sys.stderr, flush=True)


CHILDREN = Children()


@contextmanager
def forwarding_signals() -> Iterator[None]:
    """For the body, route SIGINT and SIGTERM to the running children (`Children.forward`); the handlers that were
    there before come back after it (a runner called from other code, a test, leaves the process as it found it)."""
    CHILDREN.stopping = None
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        try:
            yield
        finally:
            CHILDREN.stopping = None
        return
    previous = {signum: signal.signal(signum, CHILDREN.forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        CHILDREN.stopping = None
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_logged(argv: list[str], log: Path, threads: int, out: Path | None = None) -> str:
    """Run `python -m lvae ARGV`, its stdout and stderr to `log`; return what it wrote to `out` (an `evaluate` is
    given `--out OUT`: the result goes to a file, never through a pipe that a stopped runner would close).
    An `out` already there is a result a child finished after its runner had gone: it is used, not made again.
    Raise with the log's tail on failure."""
    if out is not None:
        if out.is_file():
            return out.read_text()
        argv = [*argv, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log, "a") as sink:
        code = CHILDREN.wait(CHILDREN.start([sys.executable, "-m", "lvae", *argv], stdout=sink, stderr=sink, env=env))
    if code:
        tail = log.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"{command(argv)} exited with {code}: {' | '.join(tail)} (log: {log})")
    return out.read_text() if out is not None else ""


@torch.no_grad()
def posterior_pca(run_dir: Path, images: int = 1000, seed: int = 0, data_root: Path | None = None) -> dict[str, Any]:
    """2-D PCA of one posterior sample per layer for the first `images` test digits."""
    from lvae.data import load_split
    from lvae.training import evaluation_inputs

    cfg, model = ckpt.load_run(run_dir)
    split = load_split("mnist", "test", data_root).head(images)
    torch.manual_seed(seed)
    out = model(evaluation_inputs(split, cfg.model.likelihood))
    layers = []
    for layer in out.latents:
        z = layer.z.flatten(1).double()
        z = z - z.mean(0)
        _, s, v = torch.linalg.svd(z, full_matrices=False)
        coords = z @ v[:2].T if z.shape[1] >= 2 else torch.cat([z, torch.zeros_like(z)], 1)
        explained = (s[:2] ** 2 / (s**2).sum()).tolist()
        layers.append({"layer": layer.layer, "coords": [[round(a, 3), round(b, 3)] for a, b in coords.tolist()],
                       "explained_variance": explained})
    return {"labels": split.labels.tolist(), "layers": layers}


def save_weights(run_dir: Path, path: Path) -> None:
    """A finished run's config and weights as a small results file (lvae.results.load_model reads it)."""
    from lvae.results import save_weights as save

    cfg, model = ckpt.load_run(run_dir)
    save(cfg, model, path)


def evaluate_argv(run_dir: Path, iw_samples: int, data_root: Path | None, epoch: int | None = None) -> list[str]:
    """The `python -m lvae evaluate` command every result is scored with (and re-scored with); a kept
    epoch's weights are scored for their likelihood only (no prior samples)."""
    data = ["--data-root", str(data_root)] if data_root else []
    kept = ["--epoch", str(epoch), "--prior-samples", "0"] if epoch is not None else []
    return ["evaluate", str(run_dir), "--iw-samples", str(iw_samples), "--json", "--no-progress", *kept, *data]


SCORE_KEYS = ("nll", "nll_stderr", "elbo", "iw_samples", "iw_chunk", "per_image_log_px", "per_image_elbo")


def cached_score(run_dir: Path, stem: str, extra_argv: list[str] | tuple[str, ...], score) -> dict[str, Any]:
    """RUN/scores/STEM[-extra flags].json, made by `score()` the first time only: a runner stopped between
    scores (or in one, at a session's end) does not redo the finished ones. `extra_argv`, more evaluate
    flags (--limit N for smoke runs), go into the name, so such runs get a cache of their own."""
    tag = "".join("-" + a.lstrip("-") for a in extra_argv)
    cache = run_dir / "scores" / f"{stem}{tag}.json"
    if cache.exists():
        return read_json(cache, "a score lvae.experiments.paper cached (delete it to score again)")
    cache.parent.mkdir(exist_ok=True)
    raw = cache.with_suffix(".evaluate.json")  # what the evaluate child writes (`run_logged`); the cache keeps what is needed
    result = score(raw)
    ckpt.write_atomic(cache, lambda f: f.write(json.dumps(result).encode()))
    raw.unlink(missing_ok=True)
    return result


def likelihood_score(run_dir: Path, iw_samples: int, epoch: int | None, log: Path, threads: int, say, name: str,
                     data_root: Path | None, extra_argv: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The likelihood part of `evaluate` on the run's latest or kept weights (cached: `cached_score`)."""
    def score(out: Path) -> dict[str, Any]:
        argv = evaluate_argv(run_dir, iw_samples, data_root, epoch) + list(extra_argv)
        if epoch is None:
            argv += ["--prior-samples", "0"]
        say(f"{name}: scoring {'epoch ' + str(epoch) if epoch is not None else 'the last epoch'} with K = {iw_samples}")
        full = json.loads(run_logged(argv, log, threads, out))
        return {k: full[k] for k in SCORE_KEYS if k in full} | {"command": command(argv)}  # iw_chunk: from evaluates that record it

    return cached_score(run_dir, f"epoch-{epoch if epoch is not None else 'last'}-K{iw_samples}", extra_argv, score)


def final_evaluation(run_dir: Path, iw_samples: int, log: Path, threads: int, say, name: str, data_root: Path | None,
                     extra_argv: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The whole `evaluate` of a finished run's last weights (cached: `cached_score`), the K = 5000 one say."""
    def score(out: Path) -> dict[str, Any]:
        say(f"{name}: evaluating with K = {iw_samples}")
        return json.loads(run_logged(evaluate_argv(run_dir, iw_samples, data_root) + list(extra_argv), log, threads, out))

    return cached_score(run_dir, f"final-K{iw_samples}", extra_argv, score)


def run_experiment(exp: Experiment, runs: Path, results: Path, threads: int, say, data_root: Path | None = None,
                   train_extra: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Train (or resume) and evaluate one experiment; write results/paper/NAME.json. The run is held
    (`runner_lock`) from its first command to its result: a second runner on it is refused.

    `data_root` and `train_extra` (e.g. --limit, --batch-size) are for smoke runs on small data.
    """
    if (results / f"{exp.name}.json").exists():
        return None
    with runner_lock(runs / exp.name):
        return _run_experiment(exp, runs, results, threads, say, data_root, train_extra)


def _run_experiment(exp: Experiment, runs: Path, results: Path, threads: int, say, data_root: Path | None,
                    train_extra: tuple[str, ...]) -> dict[str, Any] | None:
    data = ("--data-root", str(data_root)) if data_root else ()
    from lvae.training import read_jsonl

    out_json = results / f"{exp.name}.json"
    if out_json.exists():  # another runner finished it while this one waited to start
        return None
    run_dir = runs / exp.name
    commands_file = run_dir / "commands.json"
    commands = json.loads(commands_file.read_text()) if commands_file.exists() else []
    log = run_dir / "log.txt"
    if finished_epochs(run_dir) < exp.budget.epochs:
        fresh = not (run_dir / ckpt.LATEST).exists()
        argv = (exp.train_argv(run_dir, (*data, *train_extra)) + ["--overwrite"] if fresh
                else ["train", "--resume", str(run_dir), "--no-progress", *data])
        commands = [] if fresh else commands
        commands.append(command([a for a in argv if a != "--overwrite"]))
        commands_file.write_text(json.dumps(commands) + "\n")
        say(f"{exp.name}: {'training' if fresh else 'resuming'} ({commands[-1]})")
        run_logged(argv, log, threads)
    result = final_evaluation(run_dir, exp.budget.iw_samples, log, threads, say, exp.name, data_root)
    kept = [e for e in exp.budget.keep_epochs if e < exp.budget.epochs]
    if kept:  # the training-budget curve: every kept epoch scored like the last one
        last = {k: result[k] for k in SCORE_KEYS}
        result["budget_curve"] = {str(e): likelihood_score(run_dir, exp.budget.iw_samples, e, log, threads, say, exp.name, data_root)
                                  for e in kept} | {str(exp.budget.epochs): last}
    if exp.budget.headline_iw_samples and exp.seed == 0:
        result["headline"] = likelihood_score(run_dir, exp.budget.headline_iw_samples, None, log, threads, say, exp.name, data_root)
    epochs = read_jsonl(run_dir / "epochs.jsonl")
    result.update(
        name=exp.name, group=exp.group, variant=exp.variant, label=VARIANTS[exp.variant].label, depth=exp.depth, seed=exp.seed,
        epochs=exp.budget.epochs, warmup_epochs=exp.budget.warmup_epochs if VARIANTS[exp.variant].warmup else 0,
        settings=list(exp.settings), commands=commands, uninterrupted=len(commands) == 1,
        train_seconds=sum(r["seconds"] for r in epochs), train_threads=threads,
        train_device=ckpt.load_config(run_dir / "config.json").train.device,  # where it trained (evaluate's hardware says where it was scored)
        per_epoch={key: [r.get(key) for r in epochs] for key in ("train_elbo", "elbo", "recon", "kl", "kl_units")},
        pca=posterior_pca(run_dir, data_root=data_root),
    )
    results.mkdir(parents=True, exist_ok=True)
    if exp.group == "long" and exp.seed == 0:  # the figures that look inside the 5-layer models need their weights
        save_weights(run_dir, results / f"{exp.name}.pt")
    ckpt.write_atomic(out_json, lambda f: f.write((json.dumps(result, separators=(",", ":")) + "\n").encode()))
    say(f"{exp.name}: NLL {result['nll']:.2f} ± {result['nll_stderr']:.2f} (K = {result['iw_samples']}), "
        f"train {result['train_seconds'] / 60:.1f} min -> {out_json}")
    return result


def score_kept(exp: Experiment, runs: Path, threads: int, say, data_root: Path | None = None) -> int:
    """Score every epoch a long run has kept so far and not scored yet, into the cache `run_experiment` reads
    (the same command and seed, so the numbers are the ones it would compute itself). Returns how many."""
    run_dir = runs / exp.name
    kept = [e for e in exp.budget.keep_epochs if e < exp.budget.epochs and ckpt.epoch_weights(run_dir, e).is_file()]
    missing = [e for e in kept if not (run_dir / "scores" / f"epoch-{e}-K{exp.budget.iw_samples}.json").exists()]
    for e in missing:
        likelihood_score(run_dir, exp.budget.iw_samples, e, run_dir / "score-log.txt", threads, say, exp.name, data_root)
    return len(missing)


def add_per_image(exp: Experiment, runs: Path, results: Path, threads: int, say, data_root: Path | None = None) -> bool:
    """Re-score a finished run whose JSON predates per-image estimates, with the same evaluate command,
    so that comparisons with it can be paired image by image; the JSON keeps both NLLs. False: nothing to do."""
    out_json = results / f"{exp.name}.json"
    result = json.loads(out_json.read_text()) if out_json.exists() else None
    if result is None or result.get("per_image_log_px"):
        return False
    run_dir = runs / exp.name
    if not (run_dir / ckpt.LATEST).exists():
        say(f"{exp.name}: no checkpoint in {run_dir}: left unpaired")
        return False
    argv = evaluate_argv(run_dir, result["iw_samples"], data_root)
    say(f"{exp.name}: re-scoring for per-image estimates ({command(argv)})")
    with runner_lock(run_dir):
        new = json.loads(run_logged(argv, run_dir / "log.txt", threads, run_dir / "scores" / "rescored.evaluate.json"))
    result["rescored"] = {"command": command(argv), "nll_before": result["nll"], "nll_stderr_before": result["nll_stderr"]}
    result.update(nll=new["nll"], nll_stderr=new["nll_stderr"], per_image_log_px=new["per_image_log_px"])
    ckpt.write_atomic(out_json, lambda f: f.write((json.dumps(result, separators=(",", ":")) + "\n").encode()))
    say(f"{exp.name}: NLL {result['rescored']['nll_before']:.2f} -> {new['nll']:.2f} ± {new['nll_stderr']:.2f}, per image -> {out_json}")
    return True


# ----------------------------------------------------------------------------- reading the results


PAPER_RESULT = "a result lvae.experiments.paper wrote (delete it and run make paper to make it again)"


def load_results(results: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Every finished experiment's JSON, by name; a damaged one (not JSON, not an object, NaN, a number of the
    wrong type: lvae.resultcheck) gives one line that names it."""
    return {p.stem: _paper_result(read_json(p, PAPER_RESULT), p) for p in sorted(Path(results).glob("*.json"))}


def _paper_result(r: Any, path: Path) -> dict[str, Any]:
    """`r` if it is an object with the fields every reader sorts it by (group, variant, depth); else one line naming `path`."""
    problem = ("it is a JSON " + type(r).__name__ + ", not an object" if not isinstance(r, dict) else
               next((f"no {key!r} of type {kind.__name__}" for key, kind in (("group", str), ("variant", str), ("depth", int))
                     if not isinstance(r.get(key), kind) or isinstance(r.get(key), bool)), None) or
               (f"unknown variant {r['variant']!r}" if r["variant"] not in VARIANTS else None) or
               next((f"{key!r} is not a list of whole numbers" for key in ("active_units", "latent_units")
                     if key in r and not (isinstance(r[key], list) and all(isinstance(v, int) for v in r[key]))), None))
    if problem:
        raise ckpt.CheckpointError(f"{path}: not {PAPER_RESULT} ({problem})")
    return r


Arm = tuple[str, str, int]  # (group, variant, depth)


def arms(results: dict[str, dict[str, Any]]) -> dict[Arm, dict[int, dict[str, Any]]]:
    """Every finished run by its arm, then by its training seed."""
    out: dict[Arm, dict[int, dict[str, Any]]] = {}
    for r in results.values():
        out.setdefault((r["group"], r["variant"], r["depth"]), {})[r.get("seed", 0)] = r
    return out


def depth_points(results: dict[str, dict[str, Any]]) -> dict[str, dict[int, tuple[float, float, int]]]:
    """{variant label: {depth: (mean NLL over seeds, 95 % half-width over seeds, seeds)}} of the depth
    sweep, in the paper's variant order; one seed gives its test-image interval only."""
    from lvae.experiments.effects import known_effect, seed_effect

    points: dict[str, dict[int, tuple[float, float, int]]] = {}
    for (group, variant, depth), runs in sorted(arms(results).items()):
        if group != "sweep":
            continue
        nll = [r["nll"] for r in runs.values()]
        e = seed_effect(nll) if len(nll) > 1 else known_effect(nll[0], next(iter(runs.values()))["nll_stderr"])
        points.setdefault(VARIANTS[variant].label, {})[depth] = (e.mean, e.half_width, len(nll))
    return {v.label: points[v.label] for v in VARIANTS.values() if v.label in points}


def comparison_pair(results: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], str]:
    """Seed 0 of the 5-layer VAE + BN + WU and LVAE + BN + WU: the long pair where both exist, else the
    sweep's 5-layer runs; and a phrase that says which."""
    for group, name in (("long", "long-{}-s0"), ("sweep", "sweep-L5-{}-s0")):
        pair = {VARIANTS[v].label: results.get(name.format(v)) for v in ("vae-bn-wu", "lvae-bn-wu")}
        if all(pair.values()):
            epochs = next(iter(pair.values()))["epochs"]
            return pair, f"5 layers, {epochs} epochs, seed 0 ({group} runs)"  # type: ignore[return-value]
    return {}, ""


# ----------------------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lvae.experiments.paper", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=flags.integer(1, 256), default=max(1, min(2, os.cpu_count() or 1)),
                   help="runs in parallel (one thread each by default)")
    p.add_argument("--threads", type=flags.integer(1, 1024), help="torch threads per run (default: the cores shared out over --jobs); "
                                                "1 beside another job on the machine, so the two do not oversubscribe it")
    p.add_argument("--only", nargs="*", help="experiment names to run (default: all); --list shows them")
    p.add_argument("--list", action="store_true", help="list the experiments and whether each is done")
    p.add_argument("--groups", nargs="+", choices=("sweep", "long"), default=("sweep", "long"),
                   help="which experiments: the depth sweep, the long pair (hours per run: start it when it can finish)")
    p.add_argument("--device", type=flags.device, help="train on this device (cuda for the long runs where a GPU is lent); the run's config.json "
                                    "and its JSON's commands record it")
    p.add_argument("--runs", type=flags.folder, default=RUNS)
    p.add_argument("--results", type=flags.folder, default=RESULTS)
    p.add_argument("--no-estimate", action="store_true", help="skip the timing that the estimate needs")
    p.add_argument("--score-kept", action="store_true",
                   help="score the weights that unfinished long runs have kept so far (K as their budget says), then exit: "
                        "run it beside a long run, so the run's own scoring at the end has only its last epoch left")
    p.add_argument("--add-per-image", action="store_true",
                   help="re-score finished sweep runs (or the --only ones) whose JSON has no per-image estimates, so comparisons are paired")
    smoke = p.add_argument_group("smoke runs (a quick check of the pipeline; send them to another --results folder)")
    smoke.add_argument("--epochs", type=flags.integer(1, 100_000),
                       help="every run's epochs (default: the sweep's and the long pair's); a long run keeps epoch 1 too")
    smoke.add_argument("--iw-samples", type=flags.integer(1, 1_000_000), help="every run's K")
    smoke.add_argument("--data-root", type=flags.existing_folder)
    smoke.add_argument("--limit", type=flags.integer(1, 10_000_000), help="train on the first N images")
    smoke.add_argument("--batch-size", type=flags.integer(1, 60000))
    a = p.parse_args(argv)
    def shrink(b: Budget) -> Budget:
        if not a.epochs:
            return replace(b, iw_samples=a.iw_samples or b.iw_samples,
                           headline_iw_samples=b.headline_iw_samples and (a.iw_samples or b.headline_iw_samples))
        return replace(b, epochs=a.epochs, warmup_epochs=min(b.warmup_epochs, a.epochs), iw_samples=a.iw_samples or b.iw_samples,
                       keep_epochs=(1, a.epochs) if b.keep_epochs and a.epochs > 1 else (),
                       headline_iw_samples=b.headline_iw_samples and (a.iw_samples or b.headline_iw_samples))

    train_extra = tuple(x for flag, v in (("--limit", a.limit), ("--batch-size", a.batch_size), ("--device", a.device)) if v for x in (flag, str(v)))
    todo = [e for e in experiments(shrink(SWEEP), shrink(LONG)) if (not a.only or e.name in a.only) and e.group in a.groups]
    if a.only and len(todo) != len(a.only):
        unknown = sorted(set(a.only) - {e.name for e in todo})
        print(f"error: unknown experiment(s) {unknown}; see python -m lvae.experiments.paper --list", file=sys.stderr)
        return 2
    pending = [e for e in todo if not (a.results / f"{e.name}.json").exists()]
    if a.list:
        for e in todo:
            print(f"{e.name:28s} {VARIANTS[e.variant].label:16s} L={e.depth} {e.budget.epochs} epochs K={e.budget.iw_samples}: "
                  f"{run_state(e, pending, a.runs)}")
        return 0
    threads = a.threads or max(1, (os.cpu_count() or 1) // a.jobs)
    return interruptible(lambda: _work(a, todo, pending, threads, train_extra))


def run_state(e: Experiment, pending: list[Experiment], runs: Path) -> str:
    """What `--list` says of a run: done, or how many of its epochs are trained."""
    return "done" if e not in pending else f"{finished_epochs(runs / e.name)}/{e.budget.epochs} epochs"


def interruptible(work) -> int:
    """`work()`'s exit code, with a Ctrl-C or SIGTERM passed on to the children (they stop where they can resume, and
    are waited for): 128 + the signal's number when one came. Every runner goes through here."""
    with forwarding_signals():
        code = work()
        return 128 + CHILDREN.stopping if CHILDREN.stopping else code


def _work(a: argparse.Namespace, todo: list[Experiment], pending: list[Experiment], threads: int, train_extra: tuple[str, ...]) -> int:
    """What main does once its flags are checked: score kept epochs, re-score for per-image estimates, or run what is pending."""
    if a.score_kept:
        threads = a.threads or 1  # beside a running long run: one core unless told otherwise
        done = sum(score_kept(e, a.runs, threads, lambda m: print(m, flush=True), a.data_root) for e in todo if e.group == "long")
        print(f"scored {done} kept epoch(s)")
        return 0
    if a.add_per_image:
        chosen = [e for e in todo if e.group == "sweep"]
        with ThreadPoolExecutor(a.jobs) as pool:
            done = sum(pool.map(lambda e: add_per_image(e, a.runs, a.results, threads, lambda m: print(m, flush=True), a.data_root), chosen))
        print(f"re-scored {done} run(s)")
        return 0
    print(f"{len(todo) - len(pending)} of {len(todo)} experiments done; {len(pending)} to run, {a.jobs} at a time, {threads} thread(s) each")
    if pending and not a.no_estimate:
        print_estimate(pending, a.runs, a.jobs)
    return run_pending(pending, a.runs, a.results, a.jobs, threads, a.data_root, train_extra)


def print_estimate(pending: list[Experiment], runs: Path, jobs: int) -> None:
    """What is left, timed now on this machine (one thread per run), the finished part of each run left out."""
    torch.set_num_threads(1)
    per_sample = iw_seconds_per_sample()
    total = sum(estimate_seconds(e, per_sample) * max(0.0, 1 - finished_epochs(runs / e.name) / e.budget.epochs) for e in pending)
    print(f"estimate (one thread per run, measured now): {total / 3600:.1f} h of compute, "
          f"about {total / 3600 / jobs:.1f} h on {jobs} core(s) if nothing else runs", flush=True)


def run_pending(pending: list[Experiment], runs: Path, results: Path, jobs: int, threads: int, data_root: Path | None = None,
                train_extra: tuple[str, ...] = ()) -> int:
    """Train and score every pending experiment, `jobs` at a time; one failure does not stop the others. Exit code."""
    lock = threading.Lock()
    t0 = time.time()

    def say(msg: str) -> None:
        with lock:
            print(f"[{(time.time() - t0) / 60:6.1f} min] {msg}", flush=True)

    failures = []

    def one(e: Experiment) -> None:
        try:
            run_experiment(e, runs, results, threads, say, data_root, train_extra)
        except Exception as err:  # one failed run must not stop the others
            failures.append(e.name)
            say(f"{e.name}: FAILED: {err}")

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, pending))
    say(f"finished; {len(failures)} failed: {failures}" if failures else "finished")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
