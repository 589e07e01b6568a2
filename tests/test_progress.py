"""Progress bars for people, plain lines for logs: a run whose output goes to a file or a
pipe (CI, nohup) logs one line per epoch and no carriage-return redraws."""

from __future__ import annotations

import io
import sys

import pytest

from lvae.progress import progress_bar
from conftest import run_lvae


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_only_where_someone_watches(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not progress_bar(range(3)).disable
    assert progress_bar(range(3), enabled=False).disable  # --no-progress
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a file or a pipe
    assert progress_bar(range(3)).disable


@pytest.mark.slow
def test_training_into_a_log_writes_one_line_per_epoch_and_no_redraws(tmp_path, tiny_data):
    """run_lvae pipes stdout and stderr, as nohup or CI send them to a file: neither is a TTY."""
    out = run_lvae("train", "--config", "paper", "--epochs", "2", "--batch-size", "32", "--data-root", tiny_data, "--out", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stderr and len(out.stderr.splitlines()) <= 2, out.stderr  # no bar: at most a stray warning
    assert [line.split(":")[0] for line in out.stdout.splitlines()] == ["epoch 1", "epoch 2", "done"], out.stdout
