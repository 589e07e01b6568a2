"""The KL warm-up explorer of notebook 03: sliders for β's schedule that redraw it and its effect.

`warmup_view` holds all the logic (a pure function, tested); `WarmupExplorer` only wires
ipywidgets to it. ipywidgets swallows exceptions raised in callbacks, so the callbacks do
nothing worth testing on their own, and the tests set the sliders' values directly.

The effect shown is measured, never extrapolated: the cached runs of the warm-up study
(the slider's schedule is matched to the nearest of them), plus any run the user trains
with the button, at the study's size.

What a button's callback prints goes nowhere visible by itself: JupyterLab files the
output of a widget callback in its Log Console, not under the cell. So training runs
inside the widget's own `log` Output area, where its progress (and any error) is seen.
tests/test_browser.py checks this, and the button's full label, in a real browser.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from lvae.report import plots
from lvae.config import BetaSchedule, ConfigError
from lvae.experiments.runs import RunSummary, warmup_schedule
from lvae.schedules import beta_curve

KINDS = {"per iteration": "linear_iter", "per epoch": "linear_epoch"}


@dataclass
class WarmupView:
    """What the sliders show: their schedule, β at every iteration, and the cached run it is closest to."""

    schedule: BetaSchedule
    beta: list[float]
    nearest: str
    distance: float  # mean |β_slider − β_nearest| over the run's iterations

    @property
    def caption(self) -> str:
        return (f"{self.schedule.kind}: β {self.schedule.start:g} → {self.schedule.end:g} over "
                f"{self.schedule.steps} {'iterations' if self.schedule.kind == 'linear_iter' else 'epochs'}; "
                f"nearest measured run: '{self.nearest}' (mean |Δβ| = {self.distance:.3f})")


def warmup_view(start: float, end: float, length: int, per: str, runs: Mapping[str, RunSummary]) -> WarmupView:
    """The slider state -> its schedule and β curve, and the cached run whose β curve is nearest.

    `length` is the warm-up's length in epochs, `per` 'per iteration' or 'per epoch'. The runs
    share the study's model and length, which also fix the x-axis. A schedule that cannot
    work raises ConfigError with what to change.
    """
    if not runs:
        raise ConfigError("no runs to compare with: train the warm-up study first (python -m lvae.report.figures warmup_effect.png)")
    if per not in KINDS:
        raise ConfigError(f"unknown warm-up granularity {per!r}; choose one of {list(KINDS)}")
    first = next(iter(runs.values()))
    ipe, epochs = first.iterations_per_epoch, first.run_config.train.epochs
    if end < start:
        raise ConfigError(f"β must rise during the warm-up: start {start:g} is above end {end:g}; lower start or raise end")
    if not 1 <= length <= epochs:
        raise ConfigError(f"the warm-up length must be between 1 and {epochs} epochs (the study's run), got {length}")
    schedule = warmup_schedule(KINDS[per], float(start), float(end), int(length), ipe)
    beta = beta_curve(schedule, ipe, epochs)
    distances = {}
    for name, run in runs.items():
        other = beta_curve(run.schedule, run.iterations_per_epoch, run.run_config.train.epochs)
        n = min(len(beta), len(other))
        distances[name] = sum(abs(a - b) for a, b in zip(beta[:n], other[:n])) / n
    nearest = min(distances, key=distances.get)
    return WarmupView(schedule, beta, nearest, distances[nearest])


def draw(view: WarmupView, runs: Mapping[str, RunSummary]) -> Figure:
    """The measured runs, the nearest one highlighted, and the slider's schedule dashed over them."""
    fig = plots.warmup_effect(runs, highlight=view.nearest, extra_beta=view.beta, extra_label="sliders")
    fig.suptitle(view.caption, fontsize=9)
    return fig


def _in_kernel() -> bool:
    """Whether an IPython shell runs this (a notebook); in plain Python the widgets only hold state."""
    from IPython import get_ipython

    return get_ipython() is not None


def _png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class FigureWidget:
    """A widget whose `output` shows one figure, which also travels as a static PNG where
    widgets cannot render (a headless run, GitHub, nbviewer)."""

    widget: Any
    output: Any
    figure: Figure | None = None

    def _render(self) -> None:
        from IPython.display import clear_output, display

        if not _in_kernel():  # plain Python (tests): the state above is the whole result
            return
        with self.output:
            clear_output(wait=True)
            if self.figure is not None:
                display(self.figure)

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if self.figure is not None:
            bundle["image/png"] = _png_base64(self.figure)
        return bundle


class WarmupExplorer(FigureWidget):
    """Sliders (start, end, length, per iteration / per epoch), a 'train this schedule' button, a plot.

    Displayed in a notebook it is the live widget; where widgets cannot render (a headless
    run, GitHub, nbviewer) the same output carries a static PNG of the current view.
    `train` takes a schedule and returns the summary of a run trained with it.
    """

    def __init__(self, runs: Mapping[str, RunSummary], train: Callable[[BetaSchedule], RunSummary] | None = None,
                 start: float = 0.0, end: float = 1.0, length: int | None = None, per: str = "per iteration"):
        import ipywidgets as w

        self.runs = dict(runs)
        self.train = train
        epochs = next(iter(self.runs.values())).run_config.train.epochs
        self.start = w.FloatSlider(value=start, min=0.0, max=1.0, step=0.05, description="β start", continuous_update=False)
        self.end = w.FloatSlider(value=end, min=0.0, max=1.0, step=0.05, description="β end", continuous_update=False)
        self.length = w.IntSlider(value=length or max(1, epochs // 2), min=1, max=epochs, description="epochs", continuous_update=False)
        self.per = w.ToggleButtons(options=list(KINDS), value=per, description="rises")
        # width auto: at the default width JupyterLab cuts the label to 'train this sche…'
        self.button = w.Button(description="train this schedule", disabled=train is None, icon="play",
                               layout=w.Layout(width="auto", flex="0 0 auto"))
        self.status = w.HTML()
        self.log = w.Output()  # the button's training progress (see the module docstring)
        self.output = w.Output()
        for control in (self.start, self.end, self.length, self.per):
            control.observe(lambda _change: self.refresh(), names="value")
        self.button.on_click(lambda _button: self.train_current())
        self.widget = w.VBox([w.HBox([self.start, self.end]), w.HBox([self.length, self.per]), w.HBox([self.button, self.status]), self.log, self.output])
        self.view: WarmupView | None = None
        self.error: str | None = None
        self.figure: Figure | None = None
        self.refresh()

    def refresh(self) -> None:
        """Recompute the view from the sliders and redraw; a bad combination shows its message instead."""
        try:
            self.view = warmup_view(self.start.value, self.end.value, self.length.value, self.per.value, self.runs)
            self.error = None
            self.figure = draw(self.view, self.runs)
            self.status.value = ""
        except ConfigError as e:
            self.view, self.error, self.figure = None, str(e), None
            self.status.value = f"<span style='color:#b00'>{e}</span>"
        self._render()

    def train_current(self) -> RunSummary | None:
        """Train a short run with the sliders' schedule and add it to the plot as 'your run'."""
        if self.view is None or self.train is None:
            return None
        self.status.value = "training… (progress below)"
        self.button.disabled = True  # clicks during the run would queue up more runs
        summary = None
        try:
            with self.log:  # in a kernel, an error is shown here and swallowed: summary stays None
                if _in_kernel():
                    from IPython.display import clear_output

                    clear_output()
                summary = self.train(self.view.schedule)
        finally:
            self.button.disabled = False
        if summary is None:
            self.status.value = "<span style='color:#b00'>training failed: the error is shown below</span>"
            return None
        self.runs["your run"] = summary
        self.refresh()
        self.status.value = f"trained: final test ELBO {summary.epochs[-1]['elbo']:.1f} nats, drawn as 'your run'"
        return summary



# ----------------------------------------------------------------------------- what each layer holds (notebook 02)


class LayerExplorer(FigureWidget):
    """Choose a layer and resample: one digit's latents above the layer are kept, the chosen layer
    and everything below it are drawn afresh (`figures.layer_resamples`, one row of it).

    """

    def __init__(self, model, x, n: int = 10):
        import ipywidgets as w

        from lvae.report.figures import layer_resamples

        self.rows = lambda seed: layer_resamples(model, x, n, seed)
        self.labels = list(self.rows(0))  # top first
        self.layer = w.IntSlider(value=0, min=0, max=len(self.labels) - 1, description="layer",
                                 continuous_update=False, readout=False)
        self.caption = w.HTML()
        self.button = w.Button(description="resample", icon="refresh", layout=w.Layout(width="auto", flex="0 0 auto"))
        self.output = w.Output()
        self.seed = 0
        self.layer.observe(lambda _change: self.refresh(), names="value")
        self.button.on_click(lambda _button: self.resample())
        self.widget = w.VBox([w.HBox([self.layer, self.caption, self.button]), self.output])
        self.figure: Figure | None = None
        self.refresh()

    def resample(self) -> None:
        self.seed += 1
        self.refresh()

    def refresh(self) -> None:
        label = self.labels[len(self.labels) - 1 - self.layer.value]  # slider 0 = the bottom layer
        self.caption.value = label
        self.figure = plots.image_rows({label: self.rows(self.seed)[label]})
        self._render()
