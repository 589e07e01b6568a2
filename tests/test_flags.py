"""Every flag of every command and runner, given bad values, is refused with one line before any work (issue 32).

Each case calls the command's `main(argv)` in this process with the work itself replaced by a
sentinel: reaching it means the bad value was accepted. A refusal is a non-zero exit whose last
stderr line is an `error:` line; any other exception is a traceback a user would see.
`pytest tests/test_flags.py -s` prints the counts. (`train`'s flags are tests/test_bad_inputs.py's.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lvae import cli
from lvae.experiments import ablations, factors, paper, paper_best, seed_study, stage_ablations

HUGE = str(2**70)
POSITIVE = ["0", "-1", "1.5", "nan", "inf", "abc", HUGE]
NONNEGATIVE = ["-1", "1.5", "nan", "abc", HUGE]
SEED = ["-1", "nan", "abc", HUGE]
SECONDS = ["0", "-1", "nan", "inf", "-inf", "abc"]


class Accepted(Exception):
    """The command got past its checks and started work."""


def start_work(*args, **kwargs):
    raise Accepted


def paths(tmp: Path) -> dict[str, Path]:
    (tmp / "file.pt").write_bytes(b"x")
    (tmp / "folder").mkdir(exist_ok=True)
    return {"file": tmp / "file.pt", "folder": tmp / "folder", "missing": tmp / "missing" / "x", "in_missing": tmp / "nowhere" / "out.png"}


def cases(p: dict[str, Path]) -> dict[str, tuple[list[str], dict[str, list[str]]]]:
    """command -> (argv that is fine without the flag, {flag: bad values})."""
    missing, file, folder = str(p["missing"]), str(p["file"]), str(p["folder"])
    return {
        "evaluate": (["evaluate", file], {"--iw-samples": POSITIVE, "--chunk": POSITIVE, "--limit": POSITIVE, "--prior-samples": NONNEGATIVE,
                                          "--seed": SEED, "--epoch": POSITIVE, "--data-root": [missing, file], "--split": ["valid"],
                                          "--out": [folder, str(p["in_missing"]).replace(".png", ".json"), folder + "/r.txt"],
                                          "": [missing]}),
        "sample": (["sample", file], {"--n": POSITIVE + ["100000000"], "--temperature": ["nan", "inf", "-1", "abc", "1e9"], "--seed": SEED,
                                      "--out": [folder, str(p["in_missing"]), folder + "/s.txt"], "": [missing]}),
        "data": (["data"], {"--root": [file], "--dataset": ["cifar"], "--source": ["ftp"]}),
        "classifier": (["classifier"], {"--epochs": POSITIVE, "--seed": SEED, "--data-root": [missing, file],
                                        "--out": [folder, str(p["in_missing"]).replace(".png", ".pt")]}),
        "paper": ([], {"--jobs": POSITIVE, "--threads": POSITIVE, "--epochs": POSITIVE, "--iw-samples": POSITIVE, "--limit": POSITIVE,
                       "--batch-size": POSITIVE, "--data-root": [missing, file], "--runs": [file], "--results": [file],
                       "--device": ["gpu", "cuda:x"], "--groups": ["other"], "--only": ["no-such-run"]}),
        "paper_best": ([], {"--threads": POSITIVE, "--score-threads": POSITIVE, "--iw-samples": POSITIVE, "--test-limit": POSITIVE,
                            "--limit": POSITIVE, "--batch-size": POSITIVE, "--data-root": [missing, file], "--runs": [file],
                            "--results": [file], "--arch": ["huge"], "--stage-epochs": [*POSITIVE, "1 1"]}),
        "ablations": ([], {"--epochs": POSITIVE, "--seeds": POSITIVE, "--equal-cpu-seconds": SECONDS, "--iw-samples": POSITIVE,
                           "--limit": POSITIVE, "--only": ["nope"], "--out": [folder, str(p["in_missing"]).replace(".png", ".json")]}),
        "stage_ablations": ([], {"--epochs": POSITIVE, "--seeds": POSITIVE, "--iw-samples": POSITIVE, "--limit": POSITIVE,
                                 "--base-cpu-seconds": SECONDS, "--base-epochs": POSITIVE,
                                 "--out": [folder, str(p["in_missing"]).replace(".png", ".json")]}),
        "seed_study": ([], {"--iw-samples": POSITIVE, "--limit": POSITIVE, "--only": ["nope"],
                            "--out": [folder, str(p["in_missing"]).replace(".png", ".json")]}),
        "factors": ([], {"--jobs": POSITIVE, "--threads": POSITIVE, "--epochs": POSITIVE, "--iw-samples": POSITIVE, "--limit": POSITIVE,
                         "--batch-size": POSITIVE, "--data-root": [missing, file], "--runs": [file], "--results": [file],
                         "--factors": ["nope"], "--only": ["no-such-run"]}),
    }


MAINS = {"evaluate": cli.main, "sample": cli.main, "data": cli.main, "classifier": cli.main, "paper": paper.main,
         "paper_best": paper_best.main, "ablations": ablations.main, "stage_ablations": stage_ablations.main,
         "seed_study": seed_study.main, "factors": factors.main}


@pytest.fixture
def no_work(monkeypatch):
    """Replace the first piece of work of every command by the sentinel."""
    for name in cli.COMMANDS:
        monkeypatch.setitem(cli.COMMANDS, name, start_work)
    for target in ("run_pending", "print_estimate", "score_kept", "add_per_image"):
        monkeypatch.setattr(paper, target, start_work)
    monkeypatch.setattr(paper_best, "run", start_work)
    monkeypatch.setattr(ablations, "load_split", start_work)
    monkeypatch.setattr(stage_ablations, "load_split", start_work)
    monkeypatch.setattr(seed_study, "run_variant", start_work)
    monkeypatch.setattr(seed_study, "load_classifier", start_work)


def outcome(main, argv: list[str], capsys) -> str:
    """"refused", "accepted" or "traceback: ..."."""
    try:
        code = main(argv)
    except Accepted:
        return "accepted"
    except SystemExit as e:
        code = e.code
    except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
        return f"traceback: {type(e).__name__}: {e}"
    err = capsys.readouterr().err.strip().splitlines()
    if code in (0, None):
        return "accepted"
    return "refused" if err and "error:" in err[-1] else f"traceback: exit {code} without an error line: {err[-3:]}"


def test_every_bad_flag_is_refused_before_any_work(tmp_path, no_work, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runners' default folders (runs/, results/) resolve here, empty
    p = paths(tmp_path)
    tally = {"cases": 0, "refused": 0, "accepted": [], "tracebacks": []}
    for command, (base, bad) in cases(p).items():
        assert outcome(MAINS[command], base, capsys) == "accepted", f"{command} {base}: the good command must reach its work"
        for flag, values in bad.items():
            for value in values:
                if flag == "":  # the positional path
                    argv = [base[0], value, *base[2:]]
                else:
                    argv = [*base, flag, *value.split(" ")] if flag == "--stage-epochs" else [*base, flag, value]
                    argv = [*argv, "2", "3"] if flag == "--stage-epochs" and " " not in value else argv
                got = outcome(MAINS[command], argv, capsys)
                tally["cases"] += 1
                if got == "refused":
                    tally["refused"] += 1
                elif got == "accepted":
                    tally["accepted"].append(f"{command} {flag} {value}")
                else:
                    tally["tracebacks"].append(f"{command} {flag} {value}: {got}")
    print(f"{tally['cases']} bad flag values over {len(MAINS)} commands and runners: {tally['refused']} refused, "
          f"{len(tally['accepted'])} accepted, {len(tally['tracebacks'])} tracebacks")
    assert not tally["tracebacks"], "\n".join(tally["tracebacks"][:10])
    assert not tally["accepted"], "\n".join(tally["accepted"][:20])
    assert tally["cases"] > 300
