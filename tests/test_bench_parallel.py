"""`python -m lvae.speed.bench_parallel` times whole train commands in each layout, torchrun included."""

import json
from pathlib import Path

import pytest

from lvae.speed import tables
from lvae.speed import bench_parallel


def test_images_per_epoch_follow_the_distributed_sampler():
    assert bench_parallel.images_per_epoch(30000, 256, 1) == 117 * 256
    assert bench_parallel.images_per_epoch(30000, 256, 2) == 117 * 256  # 15000 per rank, 128 per local batch
    assert bench_parallel.images_per_epoch(1000, 256, 2) == 3 * 256


def test_the_best_round_of_each_layout_is_kept_and_the_fastest_named(monkeypatch):
    """On made-up rates, two rounds: each layout keeps its best round, and the layout with the highest
    best is named, with its ratio to one thread."""
    rates = iter([10.0, 30.0, 25.0, 12.0, 20.0, 40.0])  # round 1, then round 2, layouts in LAYOUTS order
    monkeypatch.setattr(bench_parallel, "run_layout", lambda *a, **k: next(rates))
    b = bench_parallel.bench("paper", 2, 512, 2, None)
    assert [r["images_per_s"] for r in b["rows"]] == [12.0, 30.0, 40.0]
    assert [r["vs_one_thread"] for r in b["rows"]] == pytest.approx([1.0, 2.5, 40 / 12])
    assert b["fastest"] == b["rows"][2]["layout"]
    with pytest.raises(SystemExit, match="at least 2"):
        bench_parallel.bench("paper", 1, 512, 1, None)


@pytest.mark.slow
def test_every_layout_trains_and_the_fastest_is_named(tiny_data, tmp_path, capsys):
    out = tmp_path / "bench-parallel.json"
    assert bench_parallel.main(["--config", "paper", "--epochs", "2", "--limit", "512", "--rounds", "1",
                                "--data-root", str(tiny_data), "--save", str(out)]) == 0
    b = json.loads(out.read_text())
    cores = b["hardware"]["cores"]
    assert [(r["processes"], r["threads"]) for r in b["rows"]] == [(1, 1), (1, cores), (cores, 1)]
    layouts = {r["layout"]: r for r in b["rows"]}
    assert layouts["1 process x 1 thread"]["vs_one_thread"] == 1.0
    assert all(r["images_per_s"] > 0 for r in b["rows"])
    assert b["fastest"] in layouts
    assert "Fastest: **" in capsys.readouterr().out
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bench-parallel.json").write_text(out.read_text())
    assert "| torchrun: 1 process per core x 1 thread |" in tables.render(tmp_path / "results")


@pytest.mark.slow
def test_bench_compare_runs_each_tree_s_own_code(tmp_path, monkeypatch):
    """Against HEAD itself, in a git worktree; the `before` side must import the worktree's lvae, not this one."""
    import subprocess

    from lvae.speed import bench_compare

    repo = Path(__file__).resolve().parents[1]
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True).returncode:
        pytest.skip("not a git checkout: nothing to compare against")
    monkeypatch.chdir(repo)
    seen = []
    real = bench_compare.workload_rate
    monkeypatch.setattr(bench_compare, "workload_rate", lambda tree, *a: seen.append(tree) or real(tree, *a))
    r = bench_compare.compare("HEAD", rounds=1, steps=1, threads=[1], data_root=tmp_path, workloads=["iw-eval-paper"])
    assert [row["workload"] for row in r["rows"]] == ["iw-eval-paper"]
    row = r["rows"][0]
    assert row["speedup"] == pytest.approx(row["after"] / row["before"])
    assert 1 / 3 < row["speedup"] < 3  # the same code on both sides: a broken timer or a swapped tree is far off
    assert seen[0] != repo and seen[1] == repo and not seen[0].exists()  # the worktree is removed afterwards
    assert "| iw-eval-paper | 1 |" in bench_compare.table(r)
