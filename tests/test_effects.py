"""The seed-aware paired effect and the verdict rule, on synthetic results whose answer is known."""

import math
import random

import pytest
from scipy import stats

from lvae.experiments.effects import NO_DIFFERENCE, REPRODUCED, REVERSED, known_effect, paired_effect, tally, verdict


def synthetic(seeds: int, images: int, mu: float, seed_sd: float, image_sd: float, noise_sd: float, rng: random.Random):
    """d_si = mu + tau_s + e_i + eps_si: the model lvae.experiments.effects assumes."""
    e = [rng.gauss(0, image_sd) for _ in range(images)]
    return [[mu + tau + ei + rng.gauss(0, noise_sd) for ei in e] for tau in (rng.gauss(0, seed_sd) for _ in range(seeds))]


def test_one_seed_gives_the_image_level_interval_and_says_so():
    rng = random.Random(0)
    one = [rng.gauss(-0.1, 1.0) for _ in range(2000)]
    effect = paired_effect([one])
    sd = math.sqrt(sum((x - sum(one) / len(one)) ** 2 for x in one) / (len(one) - 1))
    image_level = stats.t.ppf(0.975, len(one) - 1) * sd / math.sqrt(len(one))  # df = N - 1
    assert effect.half_width == pytest.approx(image_level, rel=1e-9)
    assert effect.mean == pytest.approx(sum(one) / len(one))
    assert "one seed: training noise not measured" in effect.describe() and "seed SE" not in effect.describe()
    assert "seed SE" not in known_effect(-0.5, 0.1).describe()


def test_the_interval_is_the_spread_of_the_seed_means_with_s_minus_1_df():
    """SE^2 = sample variance of the per-seed means / S, t with S - 1 degrees of freedom, nothing added for images."""
    rng = random.Random(1)
    for seeds in (2, 3, 5):
        rows = synthetic(seeds, 300, -0.1, 0.2, 1.0, 0.5, rng)
        m = [sum(r) / len(r) for r in rows]
        d = sum(m) / seeds
        se = math.sqrt(sum((x - d) ** 2 for x in m) / (seeds - 1) / seeds)
        effect = paired_effect(rows)
        assert effect.mean == pytest.approx(d) and effect.seed_se == pytest.approx(se)
        assert effect.half_width == pytest.approx(stats.t.ppf(0.975, seeds - 1) * se, rel=1e-9)
        assert f"{seeds} seeds; SE" in effect.describe()


def test_a_spread_between_seeds_widens_the_interval():
    rng = random.Random(1)
    base = synthetic(3, 2000, -0.1, 0.0, 1.0, 0.05, rng)
    shifted = [[x + shift for x in row] for row, shift in zip(base, (-0.3, 0.0, 0.3))]  # same mean, seeds disagree
    calm, noisy = paired_effect(base), paired_effect(shifted)
    assert noisy.mean == pytest.approx(calm.mean)
    assert noisy.half_width > 5 * calm.half_width
    assert noisy.seed_se == pytest.approx(math.sqrt(0.3**2 / 3 + calm.seed_se**2), rel=0.05)


# On the test set the claims are about, d_si = mu + tau_s + e_i + eps_si has effect mu + mean_i(e_i): e_i is shared
# by every seed, so it is part of the effect, not noise. 2000 repetitions: a 95 % interval covers 93.5-96.5 % of them
# (three binomial standard deviations). The old formula (seed part + image part, Welch-Satterthwaite df) covered
# 100.0 % in the image-heavy setting (it counted the image noise twice) and 93.65 % in the seed-heavy one.
COVERAGE_SETTINGS = [(3, 200, 0.2, 0.05, 1.0, 0.3), (3, 200, 0.2, 0.15, 0.5, 0.3), (5, 100, -0.1, 0.1, 1.0, 1.0)]


def coverage(effect_fn, seeds, images, mu, seed_sd, image_sd, noise_sd, repetitions=2000, rng_seed=2):
    rng, covered = random.Random(rng_seed), 0
    for _ in range(repetitions):
        e = [rng.gauss(0, image_sd) for _ in range(images)]
        rows = [[mu + tau + ei + rng.gauss(0, noise_sd) for ei in e] for tau in (rng.gauss(0, seed_sd) for _ in range(seeds))]
        effect, target = effect_fn(rows), mu + sum(e) / images
        covered += effect.low <= target <= effect.high
    return covered / repetitions


@pytest.mark.parametrize("setting", COVERAGE_SETTINGS)
def test_the_interval_covers_the_true_effect_at_its_nominal_rate(setting):
    assert 0.935 <= coverage(paired_effect, *setting) <= 0.965  # 95 % nominal


def test_the_verdict_rule():
    assert verdict(known_effect(-0.5, 0.1)) == REPRODUCED
    assert verdict(known_effect(+0.5, 0.1)) == REVERSED
    assert verdict(known_effect(-0.1, 0.1)) == NO_DIFFERENCE
    assert verdict(known_effect(+0.5, 0.1), claimed_sign=+1) == REPRODUCED
    assert verdict(known_effect(-0.5, 0.1, seeds=1), min_seeds=3) == "not measured yet (1 of 3 seeds)"
    with pytest.raises(ValueError):
        verdict(known_effect(0, 1), claimed_sign=0)


def test_counts_say_what_happened_at_each_depth():
    text = tally({2: REPRODUCED, 3: REPRODUCED, 4: REVERSED, 5: NO_DIFFERENCE}, "ladder", "VAE")
    assert text == "ladder better at 2 of 4 depths, VAE better at 1, no difference at 1"
    assert tally({2: REPRODUCED, 3: "not measured yet (1 of 3 seeds)"}, "ladder", "VAE").endswith("not measured yet at 1")
    assert tally({2: "not measured yet (1 of 3 seeds)"}, "ladder", "VAE") == "not measured yet (no depth has 3 seeds of both)"


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        paired_effect([[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError):
        paired_effect([])
