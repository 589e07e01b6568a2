"""One writer per run folder, and a full disk said plainly: both with real processes where it matters.

The lock: a second `train --resume RUN` or `train --out RUN --overwrite` while RUN trains is
refused (exit 75) with one line naming the folder and the pid, and touches nothing; a
SIGKILLed run's lock goes with it, so its resume starts at once. The full disk: ENOSPC inside
torch.save (the injected write fails as a real one does), one line naming the file, the space
needed and free, the intact checkpoint and the resume command (exit 74); the resume after it
is exact.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import disk_full
from lvae import checkpoint as ckpt
from lvae.cli import main
from lvae.runlock import EXIT_LOCKED, holder_pid, locked_message, run_lock
from lvae.training import read_jsonl
from conftest import HOOKS, run_lvae

pytestmark = pytest.mark.slow  # real processes, locks and full disks: `make test-fast` leaves them out

PAPER = ["--config", "paper", "--batch-size", "32", "--checkpoint-every", "3", "--no-progress"]  # 256 images: 8 iterations/epoch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def load(run: Path) -> dict:
    return torch.load(run / ckpt.LATEST, weights_only=True)


# ----------------------------------------------------------------------------- one writer


def test_a_held_folder_is_refused_in_process_with_the_holders_pid(tmp_path, tiny_data, capsys):
    run = tmp_path / "run"
    assert main(["train", *PAPER, "--epochs", "1", "--data-root", str(tiny_data), "--out", str(run)]) == 0
    before = snapshot(run)
    capsys.readouterr()
    with run_lock(run):
        assert holder_pid(run) == os.getpid()
        for argv in (["train", "--resume", str(run), "--epochs", "2"], ["train", *PAPER, "--epochs", "1", "--out", str(run), "--overwrite"]):
            assert main([*argv, "--data-root", str(tiny_data), "--no-progress"]) == EXIT_LOCKED
            assert capsys.readouterr().err == f"error: {locked_message(run, os.getpid())}\n"
            assert snapshot(run) == before  # --overwrite deleted nothing
    assert holder_pid(run) is None  # released with the block
    assert main(["train", "--resume", str(run), "--epochs", "2", "--data-root", str(tiny_data), "--no-progress"]) == 0


def test_a_second_process_is_refused_and_a_killed_ones_lock_dies_with_it(tmp_path, tiny_data):
    """Real processes: the first trains (then is paused, so its folder holds still), two others try to write."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HOOKS), *filter(None, [os.environ.get("PYTHONPATH")])])}
    first = subprocess.Popen([sys.executable, "-m", "lvae", "train", *PAPER, "--epochs", "1000", "--data-root", str(tiny_data), "--out", str(run)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (run / ckpt.LATEST).exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()
        first.send_signal(signal.SIGSTOP)
        time.sleep(0.2)  # let a write in flight land
        before = snapshot(run)
        expected = f"error: {locked_message(run, first.pid)}"
        for argv in (["--resume", run], [*PAPER, "--epochs", "1", "--out", run, "--overwrite"]):
            second = run_lvae("train", *argv, "--data-root", tiny_data, "--no-progress")
            assert second.returncode == EXIT_LOCKED, second.stderr
            assert second.stderr.strip() == expected
            assert snapshot(run) == before
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    resumed = run_lvae("train", "--resume", run, "--data-root", tiny_data, "--no-progress",
                       "--epochs", str(load(run)["state"]["epoch"] + 1))
    assert resumed.returncode == 0, resumed.stderr
    iterations = [r["iteration"] for r in read_jsonl(run / "history.jsonl")]
    assert iterations == list(range(len(iterations)))  # one writer: every row once, in order


def test_holder_pid_reads_the_kernels_lock_table(tmp_path):
    table = tmp_path / "locks"
    st = os.stat(tmp_path)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    table.write_text(f"1: POSIX  ADVISORY  WRITE 11 {inode} 0 EOF\n2: FLOCK  ADVISORY  WRITE 4242 {inode} 0 EOF\n")
    assert holder_pid(tmp_path, table) == 4242
    table.write_text("1: FLOCK  ADVISORY  WRITE 4242 00:00:1 0 EOF\n")
    assert holder_pid(tmp_path, table) is None
    assert locked_message(tmp_path, None) == (f"{tmp_path} is being written by another training process; a run folder takes one writer "
                                              f"at a time: wait for that one to end, then run this command again")


# ----------------------------------------------------------------------------- a full disk

DISK_FULL = re.compile(r"^error: could not write (?P<file>\S+): no space left on device \(the file needs (?P<needed>[\d.]+ (?:[kMG]B|bytes)); "
                       r"(?P<free>[\d.]+ (?:[kMG]B|bytes)) free there\); the last good checkpoint (?P<latest>\S+) \(iteration (?P<it>\d+)\) is intact; "
                       r"resume with: python -m lvae train --resume (?P<run>\S+)$")


def test_a_full_disk_mid_checkpoint_says_what_and_where_and_resume_is_exact(tmp_path, tiny_data, monkeypatch, capsys):
    args = [*PAPER, "--epochs", "2", "--data-root", str(tiny_data)]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *args, "--out", str(ref)]) == 0
    disk_full.install(after=1, monkeypatch=monkeypatch)  # the checkpoint at iteration 3 fits; the one at 6 does not
    capsys.readouterr()
    assert main(["train", *args, "--out", str(run)]) == ckpt.EXIT_DISK_FULL
    err = capsys.readouterr().err
    m = DISK_FULL.match(err.strip())
    assert m and err.count("\n") == 1, err
    assert (m["file"], m["latest"], m["it"], m["run"]) == (str(run / "checkpoint-00000006.pt"), str(run / ckpt.LATEST), "3", str(run))
    size = (run / ckpt.LATEST).stat().st_size  # the checkpoint that failed is the same size as the one that fits
    assert abs(float(m["needed"].split()[0]) * (2**20 if "MB" in m["needed"] else 2**10) - size) < 0.01 * size
    assert load(run)["state"]["iteration"] == 3 and not list(run.glob(".*"))  # intact, no temporary files left
    saved = snapshot(run)
    assert main(["train", "--resume", str(run), "--data-root", str(tiny_data), "--no-progress"]) == ckpt.EXIT_DISK_FULL  # still full
    assert DISK_FULL.match(capsys.readouterr().err.strip())
    assert {k: v for k, v in snapshot(run).items() if k != "history.jsonl"} == {k: v for k, v in saved.items() if k != "history.jsonl"}
    monkeypatch.undo()  # space freed
    assert main(["train", "--resume", str(run), "--data-root", str(tiny_data), "--no-progress"]) == 0
    a, b = load(ref), load(run)
    assert a["state"] == b["state"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (ref / "history.jsonl").read_text() == (run / "history.jsonl").read_text()


def test_a_full_disk_in_a_real_process_exits_74_with_one_line(tmp_path, tiny_data):
    run = tmp_path / "run"
    done = run_lvae("train", *PAPER, "--epochs", "1", "--data-root", tiny_data, "--out", run, env={disk_full.ENV: "1"})
    assert done.returncode == ckpt.EXIT_DISK_FULL, done.stderr
    assert DISK_FULL.match(done.stderr.strip()) and "Traceback" not in done.stderr, done.stderr


def test_a_full_log_append_is_a_disk_full_error(tmp_path, monkeypatch):
    from lvae import training

    path = tmp_path / "history.jsonl"

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("builtins.open", no_space)
    with pytest.raises(ckpt.DiskFullError, match=rf"^could not write {path}: no space left on device \(the file needs 17 bytes; "):
        training._append_jsonl(path, [{"iteration": 0}])


@pytest.fixture
def small_disk(tmp_path):
    """A 30 MB tmpfs: room for one 21.5 MB paper checkpoint, not two. Needs root (mount); skipped elsewhere."""
    fs = tmp_path / "fs"
    fs.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(fs)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield fs
    finally:
        subprocess.run(["umount", str(fs)], check=True)


def test_a_really_full_disk_end_to_end(tmp_path, tiny_data, small_disk):
    """No injection: the disk fills; freeing space (a bigger tmpfs) and resuming gives the reference run exactly."""
    args = [*PAPER, "--epochs", "1", "--data-root", tiny_data]
    ref, run = tmp_path / "ref", small_disk / "run"
    assert run_lvae("train", *args, "--out", ref).returncode == 0
    full = run_lvae("train", *args, "--out", run)
    assert full.returncode == ckpt.EXIT_DISK_FULL, full.stderr
    m = DISK_FULL.match(full.stderr.strip())
    assert m and (m["file"], m["it"]) == (str(run / "checkpoint-00000006.pt"), "3"), full.stderr
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-00000003.pt", "checkpoint.pt", "config.json", "history.jsonl"]
    subprocess.run(["mount", "-o", "remount,size=100m", str(small_disk)], check=True)  # space freed
    assert run_lvae("train", "--resume", run, "--data-root", tiny_data, "--no-progress").returncode == 0
    a, b = load(ref), load(run)
    assert a["state"] == b["state"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (ref / "history.jsonl").read_text() == (run / "history.jsonl").read_text()


# ----------------------------------------------------------------------------- readers during a write


def test_a_log_being_appended_reads_as_its_whole_lines_and_damage_elsewhere_is_named(tmp_path):
    """evaluate, figures and resume read the logs while a writer may be mid-line: the torn last line is left out."""
    log = tmp_path / "history.jsonl"
    whole = '{"iteration": 0, "epoch": 0, "beta": 1, "loss": 1, "recon": 1, "elbo": -1, "kl": [0.5]}\n'
    log.write_text(whole * 2 + whole[:30])  # the third row half written
    assert [r["iteration"] for r in read_jsonl(log)] == [0, 0]
    log.write_text(whole + whole[:30] + "\n" + whole)  # a torn line with rows after it: damage, not a write in flight
    with pytest.raises(ckpt.CheckpointError, match=rf"^{log}, line 2: not a JSON row"):
        read_jsonl(log)
