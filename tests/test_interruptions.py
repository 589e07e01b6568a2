"""Interruptions lose nothing (issue 32 item 5): stale temporaries, the runner's lock, signals, results written to files."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from lvae.experiments import paper
from lvae.runlock import RunLocked, run_lock, runner_lock


def test_stale_temporaries_are_removed_when_the_run_is_next_opened(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".checkpoint.pt.k2j3.tmp", run / ".checkpoint-0000100.pt.x9.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)  # what a SIGKILL between write and rename leaves
    (run / "checkpoint.pt").write_bytes(b"kept")
    with run_lock(run):
        assert not any(p.exists() for p in stale) and (run / "checkpoint.pt").read_bytes() == b"kept"
    out = capsys.readouterr().out
    assert "removed 2 stale temporary file(s)" in out and ".checkpoint.pt.k2j3.tmp" in out
    with run_lock(run):  # nothing left: nothing said
        pass
    assert capsys.readouterr().out == ""


def test_a_second_runner_on_the_same_run_is_refused_for_the_whole_run(tmp_path):
    run = tmp_path / "run"
    with runner_lock(run):
        with pytest.raises(RunLocked, match="another runner"):
            with runner_lock(run):
                pass
        with run_lock(run):  # the train child's own lock is another one: the runner's child may still train
            pass
    with runner_lock(run):  # released with the run
        pass


def test_a_signal_reaches_the_child_and_the_runner_waits_for_it(tmp_path):
    with paper.forwarding_signals():
        child = paper.CHILDREN.start([sys.executable, "-c", "import time; time.sleep(60)"])
        paper.CHILDREN.forward(signal.SIGTERM)
        assert paper.CHILDREN.wait(child) == -signal.SIGTERM and not paper.CHILDREN.live
        with pytest.raises(RuntimeError, match="stopping"):  # nothing new starts once stopping
            paper.CHILDREN.start([sys.executable, "-c", "pass"])
    assert paper.CHILDREN.stopping is None and signal.getsignal(signal.SIGTERM) is not paper.CHILDREN.forward


def test_a_result_the_child_wrote_after_its_runner_went_is_used(tmp_path, monkeypatch):
    out = tmp_path / "scores" / "final-K5.evaluate.json"
    out.parent.mkdir()
    out.write_text('{"nll": 90.0}\n')  # written by an evaluate whose runner had been stopped

    def never(*args, **kwargs):
        raise AssertionError("scored again")

    monkeypatch.setattr(paper.CHILDREN, "start", never)
    assert paper.run_logged(["evaluate", "RUN"], tmp_path / "log.txt", 1, out) == '{"nll": 90.0}\n'


def test_evaluate_out_is_checked_before_any_work(tmp_path):
    """evaluate --out (where a runner's child writes its result, not through a pipe): a folder that exists, a .json name."""
    from lvae import cli

    done = subprocess.run([sys.executable, "-c", "from lvae.cli import build_parser; "
                           "a = build_parser().parse_args(['evaluate', '.', '--out', 'missing/r.json'])"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "missing is not a folder that exists" in done.stderr
    a = cli.build_parser().parse_args(["evaluate", str(tmp_path), "--out", str(tmp_path / "r.json")])
    assert a.out == tmp_path / "r.json"
