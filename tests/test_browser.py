"""Notebook 03 in a real browser: JupyterLab, headless Chromium, the sliders and the button, used as a person would.

The widget tests (test_widgets.py) set slider values in Python; they cannot see what
JupyterLab makes of the widget. This test can: it serves a copy of the notebook from
JupyterLab on 127.0.0.1, opens it in Debian's Chromium through chromedriver (never a
downloaded browser), runs every cell under LVAE_FAST=1, drags two sliders, clicks "train
this schedule", and checks what is on the screen: the plot changes, the button's whole
label shows, and the training progress appears in the notebook, not in JupyterLab's
hidden Log Console. Screenshots go to test-artifacts/notebook03/ (git-ignored).

Skipped, with the reason, only where Chromium or chromedriver is missing (`make browser`
installs them; it needs root).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import checkout_first_pythonpath

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_kl_warmup_training.ipynb"
ARTEFACTS = ROOT / "test-artifacts" / "notebook03"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Works as root in a container: no sandbox, no GPU, and nothing that calls home.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1800"]
RUN_ALL_TIMEOUT = 600  # s: the first run of the notebook trains the three small warm-up runs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()),
                       reason=f"no Chromium at {CHROMIUM} or no chromedriver at {CHROMEDRIVER}: "
                              f"`make browser` installs Debian's chromium and chromium-driver (needs root)"),
]


# ----------------------------------------------------------------------------- JupyterLab


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_lab_dir(tmp: Path) -> Path:
    """A copy of notebook 03 with its outputs cleared, so 'ran' is visible as fresh execution counts.

    JupyterLab autosaves: serving a copy keeps the committed notebook untouched.
    """
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    notebooks = tmp / "notebooks"
    notebooks.mkdir()
    nbformat.write(nb, notebooks / NOTEBOOK.name)
    return notebooks


def lab_environment(tmp: Path) -> dict[str, str]:
    """The server's (and so the kernel's) environment: fast mode, fresh runs, this checkout's lvae, no user state.

    The kernel starts in the copy's folder, so PYTHONPATH names this checkout; the Jupyter
    folders are fresh so no user setting, workspace or kernelspec changes the page.
    """
    settings = tmp / "lab-settings"
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news toast over the page
    return {**os.environ, "LVAE_FAST": "1", "LVAE_RUNS": str(tmp / "runs"),
            "PYTHONPATH": checkout_first_pythonpath(),
            "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"), "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"), "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces")}


def wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Poll the server's status API until it answers; fail with its log if it dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2):
                return
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer {url.split('?')[0]} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on 127.0.0.1 (a free port, a random token) serving the copy; yields the notebook's URL."""
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={prepare_lab_dir(tmp_path)}"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=lab_environment(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: the kernel goes down with it
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{base}/api/status?token={token}", proc, log)
        yield f"{base}/lab/tree/{NOTEBOOK.name}?reset&token={token}"
    finally:
        stop(proc)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTEFACTS / "jupyterlab.log")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (server and kernel), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
            return


# ----------------------------------------------------------------------------- the browser


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25)


def by_css(root, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return root.find_elements(By.CSS_SELECTOR, selector)


def by_xpath(root, xpath: str):
    from selenium.webdriver.common.by import By

    return root.find_element(By.XPATH, xpath)


def menu(driver, top: str, command: str) -> None:
    """Click a menu of JupyterLab's menu bar, then one of its items (named by its command id)."""
    by_xpath(driver, f"//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='{top}']").click()
    wait(driver).until(lambda d: by_css(d, f"li.lm-Menu-item[data-command='{command}']"))[0].click()


def kernel_status(driver) -> str:
    """The status bar's text ('Python 3 (ipykernel) | Idle' …); empty while the page is still loading."""
    bar = by_css(driver, "#jp-main-statusbar")
    return bar[0].text if bar else ""


def prompts(driver) -> list[str]:
    """The execution prompts of every code cell: '[ ]:' not run, '[*]:' running, '[3]:' ran."""
    return [p.text.strip() for p in by_css(driver, ".jp-Notebook .jp-CodeCell .jp-InputArea-prompt")]


def all_ran(driver) -> bool:
    shown = prompts(driver)
    return bool(shown) and all(p[1:-2].isdigit() for p in shown) and "Idle" in kernel_status(driver)


def visible_errors(driver) -> list[str]:
    """Tracebacks in any output area, the widget's own included."""
    return [e.text[-2000:] for e in by_css(driver, ".jp-Notebook [data-mime-type='application/vnd.jupyter.error']")]


def log_console_messages(driver) -> int:
    """The count on the status bar's Log Console item: where JupyterLab files a widget callback's stray output."""
    items = [e for e in by_css(driver, ".jp-LogConsoleStatusItem") if e.is_displayed()]
    digits = "".join(c for c in items[0].text if c.isdigit()) if items else ""
    return int(digits or 0)


def plot_png(explorer) -> bytes | None:
    """The bytes of the PNG the explorer's plot area shows now (None while it shows none)."""
    images = by_css(explorer, ".widget-output img")
    src = images[-1].get_attribute("src") if images else ""
    return base64.b64decode(src.split(",", 1)[1]) if src.startswith("data:image/png;base64,") else None


def wait_for_new_plot(driver, explorer, before: bytes, what: str) -> bytes:
    """Wait until the plot's PNG differs from `before`: the kernel redrew it and the page shows it."""
    wait(driver, 120).until(lambda _: plot_png(explorer) not in (None, before),
                            f"the plot did not change after {what}")
    return plot_png(explorer)


def slider(explorer, label: str):
    return by_xpath(explorer, f".//div[contains(@class, 'widget-slider')][label[text()='{label}']]")


def drag(driver, explorer, label: str, fraction: float) -> str:
    """Drag slider `label`'s handle by `fraction` of its track; returns the readout once the page shows the new value."""
    from selenium.webdriver.common.action_chains import ActionChains

    s = slider(explorer, label)
    readout = by_css(s, ".widget-readout")[0]
    old, track = readout.text, by_css(s, ".noUi-base")[0]
    ActionChains(driver).click_and_hold(by_css(s, ".noUi-handle")[0]).move_by_offset(
        round(fraction * track.size["width"]), 0).release().perform()
    wait(driver).until(lambda _: readout.text != old, f"dragging '{label}' did not move it")
    return readout.text


def fits(driver, element) -> bool:
    """Whether the element shows all of its text (no ellipsis): its content is no wider than its box."""
    return driver.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", element)


def shot(driver, element, name: str) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
    element.screenshot(str(ARTEFACTS / name))


@contextlib.contextmanager
def screenshot_on_failure(driver):
    try:
        yield
    except BaseException:
        driver.save_screenshot(str(ARTEFACTS / "failure.png"))
        raise


# ----------------------------------------------------------------------------- the test


def test_notebook_03_sliders_and_button_in_jupyterlab(lab, browser):
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    ARTEFACTS.mkdir(parents=True)
    times, t0 = {}, time.perf_counter()
    with screenshot_on_failure(browser):
        browser.get(lab)
        wait(browser).until(lambda d: "Idle" in kernel_status(d), "the kernel did not start")
        times["open"] = time.perf_counter() - t0

        menu(browser, "Run", "runmenu:run-all")
        wait(browser, RUN_ALL_TIMEOUT).until(all_ran, "the notebook did not finish running")
        times["run all cells"] = time.perf_counter() - t0
        assert not visible_errors(browser), visible_errors(browser)
        loss_source = by_xpath(browser, "//div[contains(@class, 'jp-OutputArea-output')][contains(., 'def compute_loss(')]")
        shot(browser, loss_source, "0-compute-loss-source.png")  # the package's code, shown by figures.source

        button = wait(browser).until(lambda d: by_css(d, ".jp-Notebook .widget-button"))[0]
        explorer = by_xpath(button, "ancestor::div[contains(@class, 'widget-vbox')][1]")
        shot(browser, explorer, "1-after-run-all.png")
        assert button.text == "train this schedule" and fits(browser, button), \
            f"the button's label is cut: {button.text!r} does not fit its {button.size['width']} px"
        first = plot_png(explorer)
        assert first is not None, "the explorer shows no plot after running the notebook"

        start = drag(browser, explorer, "β start", 0.3)
        after_start = wait_for_new_plot(browser, explorer, first, f"moving β start to {start}")
        length = drag(browser, explorer, "epochs", 1.0)
        after_length = wait_for_new_plot(browser, explorer, after_start, f"moving epochs to {length}")
        shot(browser, explorer, "2-after-sliders.png")
        times["sliders"] = time.perf_counter() - t0

        logged = log_console_messages(browser)
        button.click()
        status = by_css(explorer, ".widget-html")[0]
        wait(browser, 300).until(lambda _: "trained" in status.text or "failed" in status.text, "the button's run did not end")
        assert "drawn as 'your run'" in status.text, status.text
        wait_for_new_plot(browser, explorer, after_length, "training 'your run'")
        times["train this schedule"] = time.perf_counter() - t0
        progress = by_css(explorer, ".widget-output")[0]  # the log area, above the plot
        assert progress.is_displayed() and "trained" in progress.text and "epoch 1" in progress.text, \
            f"the training progress is not shown in the notebook: {progress.text!r}"
        assert by_xpath(progress, "ancestor::div[contains(@class, 'jp-Cell-outputArea')]")
        assert log_console_messages(browser) == logged, "training wrote to JupyterLab's Log Console"
        assert fits(browser, button) and button.is_enabled()
        assert not visible_errors(browser), visible_errors(browser)
        shot(browser, explorer, "3-after-your-run.png")
        browser.save_screenshot(str(ARTEFACTS / "4-page.png"))
    print("browser test, seconds since opening the page: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
