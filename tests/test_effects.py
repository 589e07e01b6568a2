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


def test_identical_seeds_give_the_image_level_interval():
    rng = random.Random(0)
    one = [rng.gauss(-0.1, 1.0) for _ in range(2000)]
    effect = paired_effect([one, one, one])
    sd = math.sqrt(sum((x - sum(one) / len(one)) ** 2 for x in one) / (len(one) - 1))
    image_level = stats.t.ppf(0.975, len(one) - 1) * sd / math.sqrt(len(one))
    assert effect.seed_se < 1e-12 and effect.half_width == pytest.approx(image_level, rel=1e-9)
    assert effect.mean == pytest.approx(sum(one) / len(one))


def test_a_spread_between_seeds_widens_the_interval():
    rng = random.Random(1)
    base = synthetic(3, 2000, -0.1, 0.0, 1.0, 0.0, rng)
    shifted = [[x + shift for x in row] for row, shift in zip(base, (-0.3, 0.0, 0.3))]  # same mean, seeds disagree
    calm, noisy = paired_effect(base), paired_effect(shifted)
    assert noisy.mean == pytest.approx(calm.mean)
    assert noisy.half_width > 5 * calm.half_width
    assert noisy.seed_se == pytest.approx(0.3 / math.sqrt(3), rel=1e-6)
    # with 3 seeds the t quantile has about 2 degrees of freedom: 4.30, not 1.96
    assert noisy.half_width / math.hypot(noisy.seed_se, noisy.image_se) > 4.0


def test_the_interval_covers_the_true_effect_at_its_nominal_rate():
    rng = random.Random(2)
    covered = sum(e.low <= 0.2 <= e.high for e in (paired_effect(synthetic(3, 200, 0.2, 0.15, 0.5, 0.3, rng)) for _ in range(400)))
    assert 0.91 <= covered / 400 <= 0.99  # 95 % nominal


def test_image_noise_alone_is_not_averaged_away_by_more_seeds():
    """Every seed is scored on the same images: their shared noise stays in the interval."""
    rng = random.Random(3)
    e = paired_effect(synthetic(20, 500, 0.0, 0.0, 1.0, 0.0, rng))
    assert e.image_se == pytest.approx(1.0 / math.sqrt(500), rel=0.15)


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
