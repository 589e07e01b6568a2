"""How the tests stop a training run at a known point, kept out of the package.

`install("SIGKILL@5")` makes rank 0 send itself that signal at the end of its 5th optimiser
step, before the loop logs it: a SIGKILL then loses the step (the last checkpoint is the
previous one due), while SIGINT/SIGTERM are caught by the loop's handler, which saves after
the next step and stops ("SIGTERM at iteration 6").
"""

from __future__ import annotations

import os
import signal

ENV = "LVAE_TEST_SIGNAL_AT"


def install(spec: str, monkeypatch=None) -> None:
    """Wrap `Trainer.step` (through pytest's `monkeypatch` in-process, so it is undone after the test)."""
    from lvae.training import Trainer

    name, _, at = spec.partition("@")
    signum, iteration = int(getattr(signal, name)), int(at)
    step = Trainer.step

    def step_then_signal(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        if self.dist.is_main and self.state.iteration + 1 == iteration:
            os.kill(os.getpid(), signum)
        return result

    if monkeypatch is not None:
        monkeypatch.setattr(Trainer, "step", step_then_signal)
    else:
        Trainer.step = step_then_signal
