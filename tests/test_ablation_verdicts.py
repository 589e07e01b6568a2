"""Ablation verdicts are recomputed from the per-seed NLLs when docs render, never copied from a JSON's old string."""

from lvae.report.docs import ablation_verdict


def _abl(arm_nll: list[float], base_nll: list[float], stored: str = "kept (-0.42 ± 0.04 nats)") -> dict:
    seeds = lambda nll: [{"seed": s, "nll": v} for s, v in enumerate(nll)]
    return {"rows": [{"name": "baseline", "seeds": seeds(base_nll)},
                     {"name": "cosine", "seeds": seeds(arm_nll), "verdict": stored}]}


def test_two_seeds_get_no_verdict_whatever_the_stored_string_says():
    abl = _abl([89.34, 89.37], [89.70, 89.85])
    text = ablation_verdict(abl, abl["rows"][1])
    assert text.startswith("not measured yet (2 of 3 seeds)") and "kept" not in text


def test_three_seeds_that_agree_are_kept_and_a_spread_that_straddles_zero_is_not():
    abl = _abl([89.0, 89.1, 89.2], [89.5, 89.6, 89.7])  # -0.5 at every seed
    assert ablation_verdict(abl, abl["rows"][1]).startswith("kept: -0.50")
    abl = _abl([89.0, 90.0, 89.2], [89.5, 89.6, 89.7])  # -0.5, +0.4, -0.5
    assert ablation_verdict(abl, abl["rows"][1]).startswith("no clear effect")
    abl = _abl([90.0, 90.1, 90.2], [89.5, 89.6, 89.7])
    assert ablation_verdict(abl, abl["rows"][1]).startswith("dropped: +0.50")


def test_a_row_without_its_reference_shows_the_stored_verdict_marked_as_stored():
    abl = {"rows": [{"name": "continue", "against": None, "seeds": [{"seed": 0, "nll": 1.0}], "verdict": "kept against the base"}]}
    assert ablation_verdict(abl, abl["rows"][0]) == "kept against the base (stored)"
    base = _abl([1, 2], [1, 2])
    assert ablation_verdict(base, base["rows"][0]) == ""  # the baseline is compared with nothing
