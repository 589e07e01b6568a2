"""The four notebooks: each .ipynb matches its .py source, and all run top to bottom in fast mode."""

import os
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from conftest import checkout_first_pythonpath

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))


def cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_every_notebook_source_has_its_ipynb_and_back():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [p.stem for p in SOURCES], "every .py needs its .ipynb and back"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_matches_its_py(source):
    built = source.with_suffix(".ipynb")
    assert built.is_file(), f"{built.name} is missing: run make notebooks"
    expected = cells(jupytext.read(source))
    actual = cells(nbformat.read(built, as_version=4))
    assert actual == expected, f"{built.name} is out of date with {source.name}: run make notebooks"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_notebooks_run_in_fast_mode(tmp_path):
    """nbval runs every cell (--nbval-lax: outputs are not compared) with LVAE_FAST=1 and fresh runs."""
    env = {**os.environ, "LVAE_FAST": "1", "LVAE_RUNS": str(tmp_path / "runs"), "MPLBACKEND": "Agg",
           "PYTHONPATH": checkout_first_pythonpath()}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
                           "-q", "-o", "addopts=", str(NOTEBOOKS)], cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    print(f"four notebooks in fast mode: {elapsed:.0f} s")


def test_notebooks_load_weights_with_the_core_loader():
    """Trained weights come through lvae.weights.load_trained, not through the experiments wing's Results."""
    for source in SOURCES:
        text = source.read_text()
        assert "headline_model" not in text and "results.model(" not in text, f"{source.name} loads weights through runs.Results"
    loaders = [s.stem for s in SOURCES if "load_trained(" in s.read_text()]
    assert loaders == ["01_deterministic_encoder_pass", "02_stochastic_decoder_pass", "04_lvae_vs_vae"]


def test_notebook_03s_run_of_todays_setup_is_the_studys_per_epoch_run_with_the_paper_codes_choices():
    from lvae.config import FIRST_SETUP_MODEL, FIRST_SETUP_TRAIN, paper_config
    from lvae.experiments import runs

    study = runs.warmup_study(runs.FULL)["per epoch"].to_dict()
    today = runs.todays_warmup(runs.FULL).to_dict()
    paper = paper_config().to_dict()
    first = {("model", k) for k in FIRST_SETUP_MODEL} | {("train", k) for k in FIRST_SETUP_TRAIN}
    changed = {(section, k) for section in ("model", "train") for k in today[section] if today[section][k] != study[section][k]}
    assert changed and changed <= first  # only the setup's fields differ, and some do
    assert all(today[section][k] == paper[section][k] for section, k in first)  # today's values are the `paper` recipe's
    assert today["objective"] == study["objective"] and today["name"] == "warmup-epoch-paper"
