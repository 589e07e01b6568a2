import pytest

from lvae.config import BetaSchedule, TrainConfig
from lvae.schedules import beta_at, beta_curve, lr_at


def test_linear_per_iteration_rises_every_iteration_from_start_to_end():
    curve = beta_curve(BetaSchedule("linear_iter", 1e-4, 0.5, None), iterations_per_epoch=10, epochs=3)
    assert curve[0] == pytest.approx(1e-4) and curve[-1] == pytest.approx(0.5)
    assert all(b > a for a, b in zip(curve, curve[1:]))


def test_linear_per_epoch_is_constant_within_an_epoch_and_holds_after_the_warm_up():
    curve = beta_curve(BetaSchedule("linear_epoch", 0.0, 1.0, 3), iterations_per_epoch=4, epochs=5)
    assert curve[:4] == [0.0] * 4 and curve[4:8] == [0.5] * 4 and curve[8:] == [1.0] * 12


def test_constant_and_fixed_length_schedules():
    assert beta_at(BetaSchedule("constant", 0.0, 0.7), 50, 1, 100, 2) == 0.7
    s = BetaSchedule("linear_iter", 0.0, 1.0, 11)
    assert beta_at(s, 5, 0, 1000, 1) == pytest.approx(0.5)
    assert beta_at(s, 500, 0, 1000, 1) == 1.0


def test_past_the_horizon_both_schedules_hold_their_final_values():
    """The horizon is the schedule's length, not the run's: training past it keeps lr_min and beta's end."""
    train = TrainConfig(lr=1e-3, lr_schedule="cosine", lr_min=1e-5, epochs=5, schedule_epochs=3)
    assert train.horizon == 3 and TrainConfig(epochs=5).horizon == 5  # not fixed yet: the run's epochs
    assert lr_at(train, 0, 30) == 1e-3 and lr_at(train, 15, 30) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert lr_at(train, 30, 30) == lr_at(train, 45, 30) == pytest.approx(1e-5)
    assert beta_at(BetaSchedule("linear_iter", 0.0, 1.0, None), 45, 4, 30, 3) == 1.0
    assert beta_at(BetaSchedule("linear_epoch", 0.0, 1.0, None), 45, 4, 30, 3) == 1.0
