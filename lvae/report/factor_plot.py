"""The factor study as a forest plot: each arm's change in the ladder's NLL, the VAE's and the gap, with intervals."""

from __future__ import annotations

from matplotlib.figure import Figure

from lvae.experiments.factor_effects import ArmEffect
from lvae.report.plots import _figure, model_color

GAP_COLOR = "k"


def forest(arms: list[ArmEffect], title: str) -> Figure:
    """One row per arm (top to bottom in the study's order); three markers per row, each with its 95 % seed-aware
    interval. Right of zero: reverting the detail made that NLL worse (for the gap: took from the ladder's advantage)."""
    fig, axes = _figure(1, 1, size=(8.0, 0.5 * len(arms) + 1.6))
    ax = axes[0, 0]
    series = (("LVAE", "ladder", -0.22, "o"), ("VAE", "vae", 0.0, "s"), ("gap (LVAE − VAE)", "gap", 0.22, "D"))
    for label, field, offset, marker in series:
        color = GAP_COLOR if field == "gap" else model_color(label)
        first = True
        for row, arm in enumerate(arms):
            e = getattr(arm, field)
            if e is None:
                continue
            ax.errorbar(e.mean, row + offset, xerr=[[e.mean - e.low], [e.high - e.mean]], fmt=marker, color=color, ms=4.5,
                        capsize=2.5, lw=1.2, label=label if first else None)
            first = False
    ax.axvline(0, color="0.4", lw=0.8)
    low, high = ax.get_xlim()
    pad = 0.1 * max(high - low, 0.1)
    ax.set_xlim(min(low, -pad), max(high, pad))  # zero always in view, with room on both sides
    ax.set_yticks(range(len(arms)))
    ax.set_yticklabels([f"{a.factor.label}\n({len(a.seeds)} of 3 seeds)" if len(a.seeds) < 3 else a.factor.label for a in arms])
    ax.invert_yaxis()
    ax.set_xlabel("change in test NLL against the baseline, nats (K = 100)\n95 % interval over seeds and images\n"
                  "right of 0: worse when reverted; for the gap: the ladder's advantage shrinks")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig
