"""`python -m lvae {train,sample,data,classifier,evaluate}`: thin argument parsing over the package.

Every error a user can cause ends in one line on stderr that says what to fix. Exit codes:
0 done, 2 an error to fix, 74 a full disk (`checkpoint.EXIT_DISK_FULL`: free space, then
resume), 75 the run folder is being written by another process (`runlock.EXIT_LOCKED`),
128 + N stopped by signal N (130: Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from lvae import checkpoint as ckpt
from lvae.config import DATASETS, WARMUP_FLAGS, ConfigError, RunConfig
from lvae import flags
from lvae.data import DataError, default_root, fetch, load_split
from lvae.recipes import NAMED_CONFIGS, named_config
from lvae.runlock import EXIT_LOCKED, RunLocked, run_lock
from lvae.runstate import RESUMABLE_FIELDS
from lvae.settings import LADDER_ONLY_FIELDS, config_flags, parse_setting, put, validate

RUN_FILES = ("config.json", "history.jsonl", "epochs.jsonl", ckpt.LATEST)
MAX_SAMPLES = 10_000  # sample --n: a 100 x 100 grid; more is not a picture (and 10**8 is 80 GB)
MAX_IW_SAMPLES = 1_000_000  # evaluate --iw-samples: each image's K log-weights are held at once (8 MB at this bound)
MAX_CHUNK = 10_000_000  # evaluate --chunk: rows per pass; a pass holds a few dozen activations of this many rows
MAX_IMAGES = 10_000_000  # --limit: more images than any split holds


# ----------------------------------------------------------------------------- train


def dest(flag: str) -> str:
    """The argparse attribute of a flag: `--batch-size` -> batch_size."""
    return flag.lstrip("-").replace("-", "_")


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", choices=sorted(NAMED_CONFIGS), help="named recipe (lvae.recipes; default seed)")
    p.add_argument("--depth", type=int, help="keep the bottom N rungs of the config (the paper's depth sweep)")
    for s in config_flags():  # every setting's flag, declared once beside its field in lvae.config
        kind = (dict(action=argparse.BooleanOptionalAction) if s.kind is bool else dict(choices=s.choices) if s.choices
                else dict(type=int, nargs="+") if s.kind == tuple[int, ...] else dict(type=s.kind))
        p.add_argument(s.meta["flag"], help=s.meta.get("help"), metavar=s.meta.get("metavar"), **kind)
    warmup = p.add_mutually_exclusive_group()
    for flag, kind in WARMUP_FLAGS.items():
        warmup.add_argument(flag, type=int, metavar="N", help=f"length of the KL warm-up, counted in {flag.split('-')[-1]} "
                                                              f"(a {kind} beta schedule)")
    warmup.add_argument("--warmup", type=int, metavar="N", help="old spelling: counts what the config's beta schedule counts")
    p.add_argument("--set", action="append", default=None, metavar="FIELD=VALUE",
                   help="set any config field, typed as the field is (e.g. --set model.var_floor=1e-4 --set train.grad_clip=none); "
                        "applied after the other flags")
    p.add_argument("--data-root", type=Path, help="data cache (default $LVAE_DATA or ./data)")
    p.add_argument("--out", type=Path, help="run folder")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    p.add_argument("--finetune", type=Path, metavar="FROM_RUN",
                   help="start a new run in --out from the weights of FROM_RUN (a run folder or a weights file, never "
                        "modified) with a fresh optimizer, at --lr for --epochs, beta held at the end of its warm-up")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--samples", type=int, default=0, metavar="N",
                   help="when training ends, draw N prior samples into RUN_DIR/samples.png (as `sample RUN_DIR --n N`)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar and no per-epoch line (the bar is drawn only on a terminal or in a notebook anyway)")


def config_from_args(a: argparse.Namespace) -> RunConfig:
    return apply_flags(named_config(a.config or "seed"), a)


def apply_flags(cfg: RunConfig, a: argparse.Namespace) -> RunConfig:
    """`cfg` with every flag that was given set on it, then the `--set` settings; a setting the model does not read is refused."""
    for s in config_flags():
        value = getattr(a, dest(s.meta["flag"]), None)
        if value is not None:
            put(cfg, s.path, tuple(value) if s.kind == tuple[int, ...] else value)
    if a.depth is not None:
        if not 1 <= a.depth <= cfg.model.depth:
            raise ConfigError(f"--depth must be between 1 and {cfg.model.depth} (the {cfg.name} config's rungs), got {a.depth}")
        cfg.model.layers = cfg.model.layers[: a.depth]
    apply_warmup(cfg, a)
    if a.model:
        cfg.name = f"{cfg.name}-{a.model}"
    settings = dict(parse_setting(cfg, text) for text in getattr(a, "set", None) or ())
    for path, value in settings.items():
        put(cfg, path, value)
    given = [s.meta["flag"] for s in config_flags() if s.path in LADDER_ONLY_FIELDS and getattr(a, dest(s.meta["flag"])) is not None]
    given += [f"--set {f}" for f in LADDER_ONLY_FIELDS if f in settings]
    if given and cfg.model_kind != "lvae":
        raise ConfigError(f"{', '.join(given)} set(s) the ladder's inference, which a {cfg.model_kind!r} model does not have: "
                          f"drop it or use --model lvae")
    return cfg


def apply_warmup(cfg: RunConfig, a: argparse.Namespace) -> None:
    """--warmup-iterations N / --warmup-epochs N: a warm-up N of that unit long. The old --warmup N counts what the
    config's schedule counts (iterations for seed, epochs for paper) and says so on stderr."""
    beta = cfg.objective.beta
    for flag, kind in WARMUP_FLAGS.items():
        n = getattr(a, dest(flag), None)
        if n is not None:
            if a.beta_schedule not in (None, kind):
                raise ConfigError(f"{flag} makes the warm-up {kind}, and --beta-schedule {a.beta_schedule} asks for another: drop one")
            beta.kind, beta.steps = kind, n
    if getattr(a, "warmup", None) is not None:
        unit = next((flag for flag, kind in WARMUP_FLAGS.items() if kind == beta.kind), None)
        if unit is None:
            raise ConfigError(f"--warmup sets the length of a warm-up, and this run's beta is {beta.kind}: drop it")
        print(f"note: --warmup is {unit} with the {beta.kind} warm-up of this config; write {unit} {a.warmup}", file=sys.stderr)
        beta.steps = a.warmup


# A resumed run keeps its config.json; the flags of lvae.runstate.RESUMABLE_FIELDS may still change.
RESUME_FLAGS = tuple(dest(s.meta["flag"]) for s in config_flags() if s.path in RESUMABLE_FIELDS)
FIXED_ON_RESUME = ("config", "depth", *(dest(s.meta["flag"]) for s in config_flags() if s.path not in RESUMABLE_FIELDS),
                   *map(dest, WARMUP_FLAGS), "warmup", "out", "overwrite", "finetune", "set")
# A fine-tuning run keeps its source's model and data: the weights must fit, and they were learnt there.
FIXED_ON_FINETUNE = ("config", "depth", *(dest(s.meta["flag"]) for s in config_flags()
                                          if s.path.split(".")[0] in ("model_kind", "model") or s.path in ("train.dataset", "train.limit")), "set")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resumed_config(a: argparse.Namespace) -> RunConfig:
    """The run's own config.json with the few flags a resumed run may change; refuse the others."""
    fixed = [flag(n) for n in FIXED_ON_RESUME if getattr(a, n, None) not in (None, False)]
    if fixed:
        raise ConfigError(f"{', '.join(fixed)} cannot be used with --resume ({a.resume / 'config.json'} fixes the run); "
                          f"a resumed run may change only {', '.join(flag(n) for n in RESUME_FLAGS)}")
    cfg = ckpt.load_config(a.resume / "config.json")
    for s in config_flags():
        if s.path in RESUMABLE_FIELDS and getattr(a, dest(s.meta["flag"])) is not None:
            value = getattr(a, dest(s.meta["flag"]))
            put(cfg, s.path, tuple(value) if s.kind == tuple[int, ...] else value)
    return cfg


def finetune_config(a: argparse.Namespace, source: RunConfig) -> RunConfig:
    """The config of a new run that continues `source`'s weights (`--finetune`): its warm-up is over (beta held
    at its final value), the learning rate is constant at --lr for --epochs, and the source is recorded;
    any other training flag given applies on top. The source's schedule is not inherited, its --lr-min
    included: a cosine from a source that annealed to 2e-4 would otherwise hold (or climb to) 2e-4."""
    fixed = [flag(n) for n in FIXED_ON_FINETUNE if getattr(a, n, None) not in (None, False)]
    if fixed:
        raise ConfigError(f"{', '.join(fixed)} cannot be used with --finetune: the new run keeps {a.finetune}'s model and data")
    missing = [flag(n) for n in ("out", "lr", "epochs") if getattr(a, n) is None]
    if missing:
        raise ConfigError(f"--finetune needs {', '.join(missing)}: where the new run goes, its (lower) learning rate and its epochs")
    src, out = a.finetune.resolve(), a.out.resolve()
    if out == src or out in src.parents:
        raise ConfigError(f"--out {a.out} would write over {a.finetune}, which fine-tuning never modifies; choose a new folder")
    cfg = source
    cfg.name = cfg.name if cfg.name.endswith("-finetune") else f"{cfg.name}-finetune"
    end = cfg.objective.beta.end
    cfg.objective.beta.kind, cfg.objective.beta.start, cfg.objective.beta.steps = "constant", end, None
    cfg.train.lr_schedule, cfg.train.lr_min, cfg.train.schedule_epochs, cfg.train.keep_epochs = "constant", 0.0, None, ()
    cfg.train.finetune_from = str(a.finetune)
    return apply_flags(cfg, a)


def existing_run_files(out: Path) -> list[str]:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose another path")
    return sorted([f for f in RUN_FILES if (out / f).exists()] + [p.name for p in out.glob(ckpt.CHECKPOINT_GLOB)])


def cmd_train(a: argparse.Namespace) -> None:
    """Check everything (config, device, data, run folder) before the first byte is written."""
    from lvae.training import Trainer, resolve_device

    from lvae.weights import load_trained

    source = None
    if a.resume:
        cfg, out = resumed_config(a), a.resume
        existing: list[str] = []
    else:
        if a.finetune is not None:
            source_cfg, source = load_trained(a.finetune)
            cfg = finetune_config(a, source_cfg)
        elif a.out is None:
            raise ConfigError("say where the run goes: --out RUN_DIR")
        else:
            cfg = config_from_args(a)
        out = a.out
        existing = existing_run_files(out)
        if existing and not a.overwrite:
            raise ConfigError(f"{out} already holds a run ({', '.join(existing)}); "
                              f"continue it with --resume {out}, or replace it with --overwrite")
    validate(cfg)
    resolve_device(cfg.train.device)
    root = a.data_root or default_root()
    train_split = load_split(cfg.train.dataset, "train", root)
    test_split = load_split(cfg.train.dataset, "test", root)
    trainer = Trainer(cfg, out, train_split, test_split, progress=not a.no_progress, data_root=root)
    with run_lock(out) if trainer.dist.is_main else nullcontext():  # one writer per run folder, taken before anything is written
        if source is not None:  # the source's weights (and batch-norm statistics) in place of a fresh initialisation
            trainer.model.load_state_dict(source.state_dict())
        if a.resume:
            trainer.resume()
        elif trainer.dist.is_main:  # --overwrite: the old run goes only now that the new one is known to start
            for name in existing:
                (out / name).unlink()
        result = trainer.fit()
        if trainer.dist.is_main and result:
            print(f"done: {out} (test ELBO {result['elbo']:.2f} nats/image)")
        if trainer.dist.is_main and a.samples:  # the same grid as `sample RUN_DIR --n N`, without loading the run again
            write_samples(trainer.eval_model, a.samples, Path(out) / "samples.png")


# ----------------------------------------------------------------------------- sample, data


def write_samples(model: torch.nn.Module, n: int, out: Path, temperature: float = 1.0, seed: int = 0) -> None:
    """A square grid of `n` prior samples (the likelihood's mean) as a PNG."""
    from torchvision.utils import save_image

    torch.manual_seed(seed)
    images = model.eval().generate(n, temperature=temperature)
    save_image(images, out, nrow=int(n**0.5 + 0.5), padding=2)
    print(f"wrote {out} ({n} samples, temperature {temperature})")


def cmd_sample(a: argparse.Namespace) -> None:
    from lvae.weights import load_trained

    cfg, model = load_trained(a.run_dir)
    default = a.run_dir.with_name(f"{a.run_dir.stem}-samples.png") if a.run_dir.is_file() else a.run_dir / "samples.png"
    write_samples(model, a.n, a.out or default, a.temperature, a.seed)


def cmd_data(a: argparse.Namespace) -> None:
    path = fetch(a.dataset, a.root or default_root(), source=a.source)
    print(f"{a.dataset} ready in {path}")


# ----------------------------------------------------------------------------- classifier, evaluate


def cmd_classifier(a: argparse.Namespace) -> None:
    from lvae.classifier import ASSET, save_classifier, train_classifier

    root = a.data_root or default_root()
    model, info = train_classifier(load_split("mnist", "train", root), load_split("mnist", "test", root),
                                   epochs=a.epochs, seed=a.seed, progress=not a.no_progress)
    out = a.out or ASSET
    save_classifier(model, info, out)
    print(f"wrote {out}: test accuracy {100 * info['test_accuracy']:.2f}% after {info['epochs']} epochs in {info['seconds']:.0f}s")


def cmd_evaluate(a: argparse.Namespace) -> None:
    import json

    from lvae.evaluation import evaluate_run, format_report

    result = evaluate_run(a.run_dir, iw_samples=a.iw_samples, split=a.split, chunk=a.chunk, limit=a.limit,
                          prior_samples=a.prior_samples, seed=a.seed, data_root=a.data_root, progress=not a.no_progress,
                          epoch=a.epoch, compile=a.compile)
    if a.out:  # first: the result is safe on disk before anything is printed to a pipe that may be gone
        ckpt.write_atomic(a.out, lambda f: f.write((json.dumps(result) + "\n").encode()))
    try:
        print(json.dumps(result) if a.json else format_report(result), flush=True)
    except BrokenPipeError:  # the reader has gone (its runner was stopped); the result is in --out, if given
        sys.stdout = open(os.devnull, "w")


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lvae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_args(sub.add_parser("train", help="train a model into a run folder"))
    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run_dir", type=flags.existing_path, help="a run folder, or a weights file (results/NAME.pt)")
    s.add_argument("--n", type=flags.integer(1, MAX_SAMPLES), default=64, help=f"samples in the grid (1 to {MAX_SAMPLES})")
    s.add_argument("--temperature", type=flags.real(low=0.0, high=10.0), default=1.0, help="scale of the prior's noise (0 to 10)")
    s.add_argument("--seed", type=flags.seed, default=0)
    s.add_argument("--out", type=flags.output_file(".png"),
                   help="PNG (default RUN_DIR/samples.png, or NAME-samples.png beside a weights file)")
    d = sub.add_parser("data", help="fetch a dataset into the cache")
    d.add_argument("--dataset", choices=DATASETS, default="mnist")
    d.add_argument("--root", type=flags.folder)
    d.add_argument("--source", choices=("auto", "online", "offline"), default="auto")
    c = sub.add_parser("classifier", help="train the digit classifier that judges samples (lvae/assets)")
    c.add_argument("--epochs", type=flags.integer(1, 1000), default=4)
    c.add_argument("--seed", type=flags.seed, default=0)
    c.add_argument("--data-root", type=flags.existing_folder)
    c.add_argument("--out", type=flags.output_file(".pt"), help="weights file (default: the package's lvae/assets/mnist_classifier.pt)")
    c.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("evaluate", help="ELBO, importance-weighted NLL, KL and active units per layer, sample quality")
    e.add_argument("run_dir", type=flags.existing_path, help="a run folder, or a weights file (results/NAME.pt)")
    e.add_argument("--iw-samples", type=flags.integer(1, MAX_IW_SAMPLES), default=1000, metavar="K",
                   help=f"importance samples per image (default 1000, at most {MAX_IW_SAMPLES:,})")
    e.add_argument("--split", choices=("test", "train"), default="test")
    e.add_argument("--chunk", type=flags.integer(1, MAX_CHUNK),
                   help="rows (images x samples) per top-down pass: bounds memory (default: 16 MB activations; docs/robustness.md)")
    e.add_argument("--limit", type=flags.integer(1, MAX_IMAGES), help="evaluate on the first N images only")
    e.add_argument("--prior-samples", type=flags.integer(0, MAX_SAMPLES * 10), default=10000,
                   help="samples for the class histogram and FID (0: skip)")
    e.add_argument("--seed", type=flags.seed, default=0)
    e.add_argument("--epoch", type=flags.integer(1, 10**6),
                   help="score the weights the run kept at the end of this epoch (train --keep-epochs), not its latest")
    e.add_argument("--data-root", type=flags.existing_folder)
    e.add_argument("--compile", action="store_true",
                   help="run the importance-weighted passes through torch.compile (kernels cached; eager if no C++ compiler works)")
    e.add_argument("--json", action="store_true", help="one JSON object on stdout")
    e.add_argument("--out", type=flags.output_file(".json"),
                   help="also write the JSON result to this file (atomically): a runner reads it there, so a result never "
                        "depends on a pipe that its reader may have closed")
    e.add_argument("--no-progress", action="store_true")
    return parser


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "data": cmd_data, "classifier": cmd_classifier, "evaluate": cmd_evaluate}


def main(argv: list[str] | None = None) -> int:
    from lvae.distributed import launch_rank
    from lvae.training import Interrupted, NonFiniteError

    args = build_parser().parse_args(argv)
    rank = launch_rank()
    # Under torchrun rank 0 speaks; the first rank of each other node too, for node-specific errors (data, GPU).
    say = rank == 0 or os.environ.get("LOCAL_RANK") == "0"
    prefix = f"[rank {rank}] " if rank else ""
    finished = False
    try:
        COMMANDS[args.command](args)
        finished = True
    except Interrupted as e:  # the trainer has told the user how to resume
        return e.exit_code
    except KeyboardInterrupt:
        if say:
            print(f"{prefix}interrupted", file=sys.stderr)
        return 130
    except (ConfigError, DataError, ckpt.CheckpointError, NonFiniteError, RunLocked) as e:
        if say:
            print(f"{prefix}error: {e}", file=sys.stderr)
        return EXIT_LOCKED if isinstance(e, RunLocked) else ckpt.EXIT_DISK_FULL if isinstance(e, ckpt.DiskFullError) else 2
    finally:
        from lvae.distributed import shutdown

        shutdown(finished)
    return 0
