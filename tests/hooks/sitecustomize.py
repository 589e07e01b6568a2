"""Loaded by every Python process the tests start with PYTHONPATH=tests/hooks (subprocesses,
torchrun workers): installs the signal hook when LVAE_TEST_SIGNAL_AT asks for one, and the
full-disk hook when LVAE_TEST_DISK_FULL_AFTER does."""

import os

if os.environ.get("LVAE_TEST_SIGNAL_AT"):
    import signal_hook

    signal_hook.install(os.environ["LVAE_TEST_SIGNAL_AT"])

if os.environ.get("LVAE_TEST_DISK_FULL_AFTER"):
    import disk_full

    disk_full.install(int(os.environ["LVAE_TEST_DISK_FULL_AFTER"]))
