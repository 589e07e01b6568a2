"""lvae/speed/speed_options.py times the options asked for, on any named config, each against the first."""

import torch

from lvae.speed import speed_options


def test_the_chosen_options_are_timed_in_order_against_the_first(capsys):
    torch.set_num_threads(1)
    speed_options.main(["--config", "paper-best", "--option", "bf16 eager", "--option", "fp32 eager", "--batch-size", "8",
                        "--steps", "1", "--rounds", "2", "--warmup", "1"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("config paper-best, cpu, batch 8, 1 threads")
    rows = [line.split(" | ") for line in table[3:5]]
    assert [r[0] for r in rows] == ["| fp32 eager", "| bf16 eager"] and rows[0][2] == "1.00x" and float(rows[1][1]) > 0
