"""`python -m lvae.bench_parallel` times whole train commands in each layout, torchrun included."""

import json

from lvae import bench_parallel, results


def test_images_per_epoch_follow_the_distributed_sampler():
    assert bench_parallel.images_per_epoch(30000, 256, 1) == 117 * 256
    assert bench_parallel.images_per_epoch(30000, 256, 2) == 117 * 256  # 15000 per rank, 128 per local batch
    assert bench_parallel.images_per_epoch(1000, 256, 2) == 3 * 256


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
    assert b["fastest"] == max(b["rows"], key=lambda r: r["images_per_s"])["layout"]
    assert "Fastest: **" in capsys.readouterr().out
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bench-parallel.json").write_text(out.read_text())
    assert "| torchrun: 1 process per core x 1 thread |" in results.render(tmp_path / "results")
