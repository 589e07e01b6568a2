"""The warm-up sliders: the pure view function, and the widget driven by setting its values."""

import matplotlib
import pytest

matplotlib.use("Agg")

from lvae.experiments import runs as lvae_runs  # noqa: E402  (the module; `runs` below is a fixture)
from lvae.config import BetaSchedule, ConfigError  # noqa: E402
from lvae.schedules import beta_curve  # noqa: E402
from lvae.training import normalised_config  # noqa: E402
from lvae.report.widgets import WarmupExplorer, draw, warmup_view  # noqa: E402

IPE, EPOCHS = 4, 6


def summary(name: str, schedule: BetaSchedule, final_elbo: float = -100.0) -> lvae_runs.RunSummary:
    """A made-up digest of a warm-up run: 6 epochs of 4 iterations, a 3-layer model."""
    cfg = lvae_runs.warmup_base(lvae_runs.FAST)
    cfg.train.epochs = EPOCHS
    cfg.objective.beta = schedule
    beta = beta_curve(schedule, IPE, EPOCHS)
    return lvae_runs.RunSummary(
        name=name, config=normalised_config(cfg), iterations_per_epoch=IPE, stride=1,
        iteration=list(range(IPE * EPOCHS)), beta=beta, recon=[200.0 - i for i in range(IPE * EPOCHS)],
        kl=[[3.0, 1.0, 0.5]] * (IPE * EPOCHS),
        epochs=[{"epoch": e, "elbo": final_elbo + e, "recon": 90.0, "kl": [3.0, 1.0, 0.5]} for e in range(EPOCHS)],
        latent_sizes=[8, 4, 2], stochastic=[True, True, True],
        active_epochs=list(range(EPOCHS)), active_units=[[e, 1, 0] for e in range(EPOCHS)],
    )


@pytest.fixture
def runs():
    return {
        "no warm-up": summary("none", BetaSchedule("constant", 1.0, 1.0, None)),
        "per iteration": summary("iter", lvae_runs.warmup_schedule("linear_iter", 0.0, 1.0, 3, IPE)),
        "per epoch": summary("epoch", lvae_runs.warmup_schedule("linear_epoch", 0.0, 1.0, 3, IPE)),
    }


def test_view_matches_a_cached_schedule_exactly(runs):
    view = warmup_view(0.0, 1.0, 3, "per iteration", runs)
    assert view.nearest == "per iteration" and view.distance == 0.0
    assert view.schedule == BetaSchedule("linear_iter", 0.0, 1.0, 3 * IPE)
    assert len(view.beta) == IPE * EPOCHS and view.beta[0] == 0.0 and view.beta[-1] == 1.0
    assert warmup_view(0.0, 1.0, 3, "per epoch", runs).nearest == "per epoch"


def test_view_picks_the_nearest_run(runs):
    near_constant = warmup_view(0.95, 1.0, 1, "per iteration", runs)
    assert near_constant.nearest == "no warm-up" and 0 < near_constant.distance < 0.05
    slow = warmup_view(0.0, 1.0, 6, "per epoch", runs)  # slower than both warm-ups: nearer the per-epoch one
    expected = {name: sum(abs(a - b) for a, b in zip(slow.beta, beta_curve(r.schedule, IPE, EPOCHS))) / (IPE * EPOCHS)
                for name, r in runs.items()}
    assert slow.nearest == min(expected, key=expected.get)
    assert slow.distance == pytest.approx(expected[slow.nearest])


@pytest.mark.parametrize("args, message", [
    ((0.8, 0.2, 3, "per iteration"), "start 0.8 is above end 0.2"),
    ((0.0, 1.0, 0, "per iteration"), "between 1 and 6 epochs"),
    ((0.0, 1.0, 7, "per epoch"), "between 1 and 6 epochs"),
    ((0.0, 1.0, 2, "per week"), "unknown warm-up granularity"),
])
def test_view_refuses_impossible_schedules_with_a_clear_message(runs, args, message):
    with pytest.raises(ConfigError, match=message):
        warmup_view(*args, runs)


def test_view_needs_runs():
    with pytest.raises(ConfigError, match="no runs to compare"):
        warmup_view(0.0, 1.0, 1, "per epoch", {})


def test_draw_highlights_the_nearest_run_and_dashes_the_sliders(runs):
    view = warmup_view(0.0, 1.0, 3, "per epoch", runs)
    fig = draw(view, runs)
    beta_ax = fig.axes[0]
    widths = {line.get_label(): line.get_linewidth() for line in beta_ax.lines}
    assert widths["per epoch"] > widths["per iteration"]
    assert [line.get_linestyle() for line in beta_ax.lines if line.get_label() == "sliders"] == ["--"]
    assert "nearest measured run: 'per epoch'" in fig._suptitle.get_text()


def test_setting_slider_values_redraws(runs):
    ex = WarmupExplorer(runs)
    assert ex.view.nearest == "per iteration" and ex.figure is not None  # defaults: 0 -> 1 over half the run
    ex.per.value = "per epoch"
    assert ex.view.schedule.kind == "linear_epoch" and ex.view.nearest == "per epoch"
    ex.start.value, ex.length.value = 0.95, 1
    assert ex.view.schedule.start == 0.95 and ex.view.nearest == "no warm-up"
    ex.end.value = 0.5  # now below start: the message replaces the plot, nothing raises
    assert ex.view is None and ex.figure is None and "above end" in ex.error and "above end" in ex.status.value
    ex.end.value = 1.0
    assert ex.error is None and ex.view is not None and ex.status.value == ""


def test_the_button_trains_the_sliders_schedule_and_adds_it(runs):
    trained = []

    def train(schedule):
        trained.append(schedule)
        return summary("live", schedule, final_elbo=-90.0)

    ex = WarmupExplorer(runs, train=train)
    ex.start.value, ex.length.value = 0.2, 2
    ex.button.click()
    assert trained == [BetaSchedule("linear_iter", 0.2, 1.0, 2 * IPE)]
    assert "your run" in ex.runs and "your run" in [l.get_label() for l in ex.figure.axes[0].lines]
    assert "-85.0" in ex.status.value  # the run's final test ELBO
    assert WarmupExplorer(runs).button.disabled  # no trainer, no button


def test_without_a_widget_frontend_the_output_carries_a_static_png(runs):
    bundle = WarmupExplorer(runs)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    import base64

    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failed_run_frees_the_button_and_adds_nothing(runs):
    def train(schedule):
        raise RuntimeError("disk full")

    ex = WarmupExplorer(runs, train=train)
    with pytest.raises(RuntimeError, match="disk full"):  # plain Python; in a kernel the log area shows it instead
        ex.train_current()
    assert not ex.button.disabled and "your run" not in ex.runs
    assert ex.log in ex.widget.children  # where a kernel shows the run's progress: tests/test_browser.py looks there


def test_the_layer_explorer_keeps_the_layers_above_and_resamples_the_rest():
    import torch

    from lvae.model import LadderVAE
    from lvae.report.widgets import LayerExplorer
    from conftest import dense_config

    torch.manual_seed(0)
    model = LadderVAE(dense_config(3)).eval()
    x = torch.rand(1, 1, 28, 28)
    ex = LayerExplorer(model, x, n=4)
    assert ex.labels == ["all drawn from the prior", "z1 … z0 drawn, z2 … kept", "z0 drawn, z1 … kept"]
    assert ex.caption.value == "z0 drawn, z1 … kept" and ex.figure is not None  # the slider starts at the bottom
    ex.layer.value = 2
    assert ex.caption.value == "all drawn from the prior"
    first = ex.rows(ex.seed)["all drawn from the prior"]
    ex.resample()
    again = ex.rows(ex.seed)["all drawn from the prior"]
    assert first.shape == again.shape == (5, 1, 28, 28) and not torch.allclose(first[1:], again[1:])
    assert torch.equal(first[0], x[0])  # each row starts with the digit itself
