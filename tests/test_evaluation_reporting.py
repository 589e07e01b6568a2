"""The results table is rendered from JSON files only, and the bench counts FLOPs honestly."""

import json

import torch

from lvae import results
from lvae.bench import count_flops, matmul_peak
from lvae.config import paper_config
from lvae.model import build_model


def fake_result(name: str, nll: float) -> dict:
    return {"name": name, "model_kind": "lvae", "likelihood": "bernoulli", "elbo": -nll - 3, "nll": nll, "nll_stderr": 0.1,
            "iw_samples": 1000, "kl_per_layer": [20.0, 5.0], "active_units": [30, 2], "latent_units": [64, 32],
            "class_kl_to_uniform": 0.01, "fid_mnist": 12.3, "command": f"python -m lvae train --out runs/{name}",
            "training": {"epochs": 7, "train_seconds": 600.0}, "hardware": {"cpu": "x86_64", "threads": 2, "torch": "2"}}


def test_readme_section_is_rendered_from_the_json_files(tmp_path):
    rdir = tmp_path / "results"
    rdir.mkdir()
    (rdir / "seed-lvae.json").write_text(json.dumps(fake_result("seed-lvae", 85.4321)))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{results.START}\nold numbers\n{results.END}\n\n{results.CLAIMS_START}\nold\n{results.CLAIMS_END}\nafter\n")
    assert results.update_readme(readme, rdir)
    text = readme.read_text()
    assert "old numbers" not in text and "**85.43**" in text and "10.0 min" in text and text.endswith("after\n")
    assert "30/64 / 2/32" in text
    assert "x86_64, 2 thread(s), torch 2, no GPU" in text  # the hardware comes from the JSON, not from the code
    assert "Sweep runs finished: **0 of 20**" in text  # the claims section, from results/paper (empty here)
    assert not results.update_readme(readme, rdir)  # idempotent


def test_saved_weights_round_trip(tmp_path):
    cfg = paper_config()
    model = build_model("lvae", cfg.model).eval()
    results.save_weights(cfg, model, tmp_path / "m.pt")
    cfg2, model2 = results.load_model(tmp_path / "m.pt")
    assert json.dumps(cfg2.to_dict()) == json.dumps(cfg.to_dict())
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model.bottom_up(x)[-1].mu, model2.bottom_up(x)[-1].mu)
    assert (tmp_path / "m.pt").stat().st_size < results.MAX_BYTES


def test_flop_count_of_a_matmul_is_2mnk():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    assert count_flops(lambda: a @ b) == 2 * 64 * 32 * 16
    assert matmul_peak(n=128, repeats=2) > 0
