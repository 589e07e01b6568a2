"""Loaded by every Python process the tests start with PYTHONPATH=tests/hooks (subprocesses,
torchrun workers): installs the signal hook when LVAE_TEST_SIGNAL_AT asks for one."""

import os

if os.environ.get("LVAE_TEST_SIGNAL_AT"):
    import signal_hook

    signal_hook.install(os.environ["LVAE_TEST_SIGNAL_AT"])
