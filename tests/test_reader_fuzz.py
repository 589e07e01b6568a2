"""Every file a command reads, fuzzed: config.json, the .jsonl logs, results/*.json, results/*.pt,
run checkpoints, run summaries and the MNIST IDX files.

Each case damages one good file (tests/mutations.py: its bytes, or the values inside it) and
calls the function the command calls on it, in this process. The outcome must be one clear
error that names the file, or a result that passes the reader's own check; any other
exception is a traceback a user would see, and fails the test. No file may change: readers
only read. `pytest tests/test_reader_fuzz.py -s` prints the counts per reader.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from lvae import checkpoint as ckpt
from lvae import results
from lvae.report import docs
from lvae.cli import build_parser, resumed_config
from lvae.config import ConfigError, validate
from lvae.data import IDX_FILES, DataError, load_split, raw_dir
from lvae.runfiles import read_json, read_jsonl
from lvae.experiments.runs import RunSummary
from conftest import run_lvae, write_tiny_dataset
from mutations import DEEP, Mutation, byte_mutations, encode_json, encode_jsonl, tree_mutations
from test_checkpoint_fuzz import run, tiny_trainer  # noqa: F401  (run is a fixture)

REPO = Path(__file__).resolve().parents[1]
CASES = 300  # per file kind, at least
CLEAR = (ckpt.CheckpointError, DataError, ConfigError)
pytestmark = pytest.mark.slow  # thousands of damaged files through every reader: `make test-fast` leaves them out


@dataclass
class Tally:
    """What one reader did with the damaged files."""

    cases: int = 0
    errors: int = 0
    worked: int = 0
    tracebacks: list[str] = field(default_factory=list)

    def line(self, reader: str) -> str:
        return f"{reader}: {self.cases} cases, {self.errors} clear errors, {self.worked} correct results, {len(self.tracebacks)} tracebacks"


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def fuzz(reader: str, target: Path, cases: list[Mutation], read: Callable[[], Any], check: Callable[[Any], None] = lambda _: None,
         folder: Path | None = None) -> Tally:
    """Write each case over `target`, call `read`, and sort the outcome; a traceback or a changed file fails the test."""
    good, folder = target.read_bytes(), folder or target.parent
    tally = Tally()
    try:
        for what, contents in cases:
            target.write_bytes(contents)
            before = snapshot(folder)
            tally.cases += 1
            try:
                result = read()
            except CLEAR as e:
                message = str(e)
                assert str(target) in message and "\n" not in message, f"{what}: {message}"
                tally.errors += 1
            except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
                tally.tracebacks.append(f"{what}: {type(e).__name__}: {str(e)[:200]}")
            else:
                check(result)
                tally.worked += 1
            assert snapshot(folder) == before, f"{what}: reading changed a file"
    finally:
        target.write_bytes(good)
    print(tally.line(reader))
    assert not tally.tracebacks, "\n".join(tally.tracebacks[:10])
    assert tally.cases >= CASES
    return tally


def mixed(good: bytes, parsed: Any, seed: int, encode: Callable[[Any], bytes], deep: bytes | None = None) -> list[Mutation]:
    """Half damaged bytes, half damaged values: CASES + 100 in all."""
    rng = random.Random(seed)
    half = (CASES + 100) // 2
    return byte_mutations(good, rng, half) + tree_mutations(parsed, rng, half, encode, deep)


# ----------------------------------------------------------------------------- a run folder


# `run`: a one-epoch run of a one-rung model on synthetic images (config.json, both logs, a checkpoint),
# the checkpoint fuzz's own fixture


def test_config_json_through_the_resume_path(run):
    """What `train --resume RUN` does first: read config.json, apply the flags, validate."""
    target = run / "config.json"
    args = build_parser().parse_args(["train", "--resume", str(run), "--epochs", "2"])

    def read():
        cfg = resumed_config(args)
        validate(cfg)
        return cfg

    cases = mixed(target.read_bytes(), read_json(target), 1, encode_json, DEEP)
    fuzz("config.json (train --resume)", target, cases, read, check=lambda cfg: validate(cfg))


@pytest.mark.parametrize("name", ["history.jsonl", "epochs.jsonl"])
def test_training_logs(run, name):
    """The logs' reader (resume, figures, results); epochs.jsonl also through the results' training summary."""
    target = run / name
    rows = read_jsonl(target)
    assert rows
    deep = target.read_bytes() + DEEP + b"\n" + target.read_bytes()  # a damaged line in the middle

    def read():
        got = read_jsonl(target)
        if name == "epochs.jsonl":
            results.training_summary(run)
        return got

    def check(got: list[dict]) -> None:
        assert isinstance(got, list) and all(isinstance(r, dict) for r in got)
        key = "iteration" if name == "history.jsonl" else "epoch"
        assert all(isinstance(r[key], int) for r in got)

    fuzz(name, target, mixed(target.read_bytes(), rows, 2, encode_jsonl, deep), read, check)


def test_run_checkpoint_values_through_evaluate_and_sample(run, tmp_path):
    """Damaged values behind a valid digest (a file another version or a bug wrote): `load_run`, as evaluate and sample call it.
    (Damaged bytes are tests/test_checkpoint_fuzz.py's.)"""
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    target = folder / ckpt.LATEST
    target.unlink()
    good = ckpt.load(run / ckpt.LATEST)
    ckpt.save_atomic(good, target)

    def encode(tree: Any) -> bytes:
        ckpt.save_atomic(tree, tmp_path / "case.pt")
        return (tmp_path / "case.pt").read_bytes()

    cases = tree_mutations(good, random.Random(3), CASES, encode)

    def check(loaded) -> None:
        cfg, model = loaded
        assert all(torch.isfinite(p).all() for p in model.parameters())

    fuzz("run checkpoint (evaluate, sample)", target, cases, lambda: ckpt.load_run(folder), check)


# ----------------------------------------------------------------------------- results


def test_results_weights_through_load_model(run, tmp_path):
    """results/NAME.pt as figures load it: damaged bytes, and damaged values behind a valid digest."""
    cfg, model = ckpt.load_run(run)
    target = tmp_path / "results" / "tiny.pt"
    results.save_weights(cfg, model, target)
    good = ckpt.load(target)

    def encode(tree: Any) -> bytes:
        ckpt.save_atomic(tree, tmp_path / "case.pt")
        return (tmp_path / "case.pt").read_bytes()

    def check(loaded) -> None:
        _, m = loaded
        assert all(torch.isfinite(p).all() for p in m.parameters())

    fuzz("results/*.pt (load_model)", target, mixed(target.read_bytes(), good, 4, encode), lambda: results.load_model(target), check)


@pytest.fixture
def results_dir(tmp_path) -> Path:
    """The repository's own headline results, copied: what `make results-table` renders."""
    out = tmp_path / "results"
    out.mkdir()
    for name in ("seed-lvae.json", "seed-vae.json", "paper-best-v1.json"):
        shutil.copy(REPO / "results" / name, out / name)
    return out


@pytest.mark.parametrize("name", ["seed-lvae.json", "paper-best-v1.json"])
def test_results_json_through_the_results_table(results_dir, name):
    """`make results-table` (lvae.report.docs): README's summary, docs/results.md and docs/claims.md."""
    target = results_dir / name
    parsed = read_json(target)
    fuzz(f"results/{name} (make results-table)", target, mixed(target.read_bytes(), parsed, 5, encode_json, DEEP),
         lambda: docs.blocks(results_dir), check=lambda blocks: all(isinstance(v, str) for b in blocks.values() for v in b.values()))


def test_run_summaries_through_the_figures(tmp_path):
    """results/summaries/*.json as `make figures` reads them (RunSummary.load)."""
    source = sorted((REPO / "results" / "summaries").glob("*.json"))[0]
    target = tmp_path / source.name
    shutil.copy(source, target)
    parsed = read_json(target)
    fuzz("results/summaries/*.json (make figures)", target, mixed(target.read_bytes(), parsed, 6, encode_json, DEEP),
         lambda: RunSummary.load(target), check=lambda s: validate(s.run_config))


# ----------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("kind", ["images", "labels"])
def test_mnist_idx_files_through_load_split(tmp_path, kind):
    """The training images and labels as every command loads them (lvae.data.load_split)."""
    root = write_tiny_dataset(tmp_path / "data", n_train=64, n_test=16)
    target = raw_dir("mnist", root) / IDX_FILES["train", kind]
    good = target.read_bytes()
    rng = random.Random(7)
    header = 4 + 4 * (3 if kind == "images" else 1)

    def header_damage() -> bytes:  # wrong shapes and types: a header field set to an odd value
        out = bytearray(good)
        i = rng.randrange(header)
        out[i] = rng.choice([0, 1, 2, 3, 4, 0x09, 0x0D, 0xFF])
        return bytes(out)

    cases = byte_mutations(good, rng, CASES) + [("header field changed", header_damage()) for _ in range(100)]

    def check(split) -> None:
        assert split.images.shape[1:] == (1, 28, 28) and len(split.images) == len(split.labels)
        assert split.images.min() >= 0 and split.images.max() <= 1 and split.labels.max() <= 9

    fuzz(f"MNIST train-{kind} (load_split)", target, cases, lambda: load_split("mnist", "train", root), check)


# ----------------------------------------------------------------------------- a few whole commands


def test_damaged_files_end_to_end_give_one_line_and_exit_2(run, tmp_path):
    """The same readers through the commands a user types, in their own processes."""
    data = write_tiny_dataset(tmp_path / "data", n_train=64, n_test=16)
    bad_config, bad_weights = tmp_path / "bad-config", tmp_path / "bad-weights"
    for folder in (bad_config, bad_weights):
        shutil.copytree(run, folder)
    (bad_config / "config.json").write_text('{"name": "seed", "model": [1, 2]}')
    (bad_weights / ckpt.LATEST).unlink()  # a hard link: replace it, never write through it
    ckpt.save_atomic({**ckpt.load(run / ckpt.LATEST), "model": {}}, bad_weights / ckpt.LATEST)
    images = raw_dir("mnist", data) / IDX_FILES["train", "images"]
    images.write_bytes(images.read_bytes()[:1000])
    cases = [(["train", "--resume", bad_config, "--epochs", "2", "--data-root", data], bad_config / "config.json"),
             (["sample", bad_weights, "--n", "4", "--out", tmp_path / "s.png"], bad_weights / ckpt.LATEST),
             (["train", "--out", tmp_path / "new", "--data-root", data, "--batch-size", "16"], images)]
    for argv, named in cases:
        before = snapshot(tmp_path)
        done = run_lvae(*argv)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and str(named) in done.stderr, done.stderr
        assert snapshot(tmp_path) == before


def test_a_damaged_result_end_to_end_through_make_results_table(results_dir):
    """`python -m lvae.report.docs` (what `make results-table` runs) in a folder holding a damaged result."""
    import os
    import subprocess
    import sys

    from conftest import checkout_first_pythonpath

    work = results_dir.parent
    (work / "README.md").write_text(f"{docs.SUMMARY_START}\n{docs.SUMMARY_END}\n")
    (work / "docs").mkdir()
    (work / docs.RESULTS_DOC).write_text(f"{docs.START}\n{docs.END}\n")
    (work / docs.CLAIMS_DOC).write_text(f"{docs.CLAIMS_START}\n{docs.CLAIMS_END}\n")
    target = results_dir / "seed-lvae.json"
    target.write_text(target.read_text().replace('"nll"', '"nll_missing"'))
    before = snapshot(work)
    done = subprocess.run([sys.executable, "-m", "lvae.report.docs"], cwd=work, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": checkout_first_pythonpath()})
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: results/seed-lvae.json: not a result lvae wrote (python -m lvae.results save writes one) (KeyError: 'nll'); " \
                          f"restore it, or save the result again\n"
    assert snapshot(work) == before


# ----------------------------------------------------------------------------- results/paper, ablations, seed study, benchmarks


@pytest.fixture
def paper_dir(tmp_path) -> Path:
    """A few of the repository's results/paper files (the 5-layer sweep pair, seed 0), copied."""
    out = tmp_path / "results" / "paper"
    out.mkdir(parents=True)
    for name in ("sweep-L5-lvae-bn-wu-s0.json", "sweep-L5-vae-bn-wu-s0.json", "sweep-L1-vae-s0.json"):
        shutil.copy(REPO / "results" / "paper" / name, out / name)
    return out


def test_paper_results_through_claims_docs_and_figures(paper_dir):
    """results/paper/*.json as claims (docs/claims.md) and the figures' data (depth points, the pair) read them."""
    from lvae.experiments import claims, paper

    target = paper_dir / "sweep-L5-lvae-bn-wu-s0.json"

    def read():
        results = paper.load_results(paper_dir)
        return claims.render(paper_dir.parent), paper.depth_points(results), paper.comparison_pair(results)

    fuzz("results/paper/*.json (claims, docs, figures)", target, mixed(target.read_bytes(), read_json(target), 8, encode_json, DEEP), read,
         check=lambda got: isinstance(got[0], str))


@pytest.mark.parametrize("name", ["paper-ablations.json", "paper-ablations-cpu.json", "seed-study.json", "bench.json"])
def test_ablation_seed_study_and_bench_files_through_their_tables(tmp_path, name):
    """The ablation and seed-study files as docs/results.md renders them, the benchmarks as docs/speed.md does."""
    from lvae.speed import tables

    out = tmp_path / "results"
    out.mkdir()
    target = out / name
    shutil.copy(REPO / "results" / name, target)
    read = (lambda: tables.render(out)) if name.startswith("bench") else (lambda: docs.render(out))
    fuzz(f"results/{name} (make results-table, docs/speed.md)", target, mixed(target.read_bytes(), read_json(target), 9, encode_json, DEEP),
         read, check=lambda text: isinstance(text, str))


@pytest.mark.parametrize("bad", [True, None, "1.0", float("nan")], ids=["true", "null", "string", "nan"])
def test_a_damaged_number_is_never_printed(paper_dir, bad):
    """Every number of a paper result replaced by true, null, a string or NaN: one line naming the file and the key."""
    import json

    from lvae.experiments import paper
    from lvae.resultcheck import NUMBERS

    target = paper_dir / "sweep-L5-lvae-bn-wu-s0.json"
    good = json.loads(target.read_text())
    keys = [k for k in good if k in NUMBERS]
    assert len(keys) >= 10
    for key in keys:
        damaged = {**good, key: bad}
        target.write_text(json.dumps(damaged))  # NaN goes out as the bare token NaN, as Python writes it
        with pytest.raises(ckpt.CheckpointError) as caught:
            paper.load_results(paper_dir)
        message = str(caught.value)
        named = "NaN" if bad != bad else key  # the parser refuses a NaN token before it knows the key
        assert str(target) in message and named in message and "\n" not in message, message
