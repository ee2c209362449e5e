"""MLflow's UI in a real browser (Debian's headless chromium + chromedriver, driven by selenium).

A short real claim sweep (``python -m fnnbench sweep=xor_single_neuron``, 6 jobs) writes a fresh
sqlite store and prints, after its summary line, the report command and the link to its runs;
the report (``python -m fnnbench.report --sweep <parent>``) logs its page and figures to the
parent run. Then ``mlflow ui`` is started with the command the sweep printed, on a free
localhost port, and the browser checks that

- the printed link opens the runs view (not the GenAI overview MLflow 3.17 opens by default)
  with the sweep's parent run and, expanded, every job by name;
- the parent's Artifacts tab holds the report page (rendered markdown) and its PNG figures.

Screenshots stay in each test's tmp_path. Skipped only when chromium or chromedriver is not
installed (``apt-get install chromium chromium-driver``; .ci/run installs them).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fnnbench.tracking import names as tn

pytestmark = [pytest.mark.slow, pytest.mark.server]

SWEEP = [
    "sweep=xor_single_neuron",
    "seed=range(0,3)",
    "model.hidden_sizes=[],[4]",
    "train.epochs=100",
]
WAIT_S = 90  # the UI is a React app over a loaded 2-core machine
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _browser() -> tuple[str, str] | None:
    chromium = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
         if os.access(p, os.X_OK)), None,
    )  # fmt: skip
    return (chromium, driver) if chromium and driver else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _line(out: str, prefix: str) -> str:
    found = [ln for ln in out.splitlines() if ln.startswith(prefix)]
    assert len(found) == 1, (prefix, out[-3000:])
    return found[0]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A real claim sweep and its report in a fresh store, and `mlflow ui` on it."""
    if _browser() is None:
        pytest.skip("chromium and chromedriver are not installed "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CI": "true"}
    sweep = subprocess.run(
        [sys.executable, "-m", "fnnbench", *SWEEP, f"hydra.sweep.dir={root / 'multirun'}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    lines = sweep.stdout.splitlines()
    summary = next(ln for ln in lines if tn.parse_sweep_line(ln) is not None)
    assert tn.parse_sweep_line(summary).n_finished == 6, summary
    parent = re.search(r"parent run (\w+) FINISHED$", summary)[1]
    at = lines.index(summary)
    assert lines[at + 1] == f"fnnbench: report: python -m fnnbench.report --sweep {parent}"
    runs_line = lines[at + 2]
    m = re.fullmatch(r"fnnbench: runs: (\S+) \(start the UI: (mlflow ui .*)\)", runs_line)
    assert m, runs_line
    runs_link, ui_cmd = m[1], m[2]

    report_cmd = shlex.split(lines[at + 1].removeprefix("fnnbench: report: "))
    report = subprocess.run(
        [sys.executable, *report_cmd[1:], "--out", str(root / "reports")],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    assert "not published" not in report.stderr, report.stderr
    page_link = _line(report.stdout, "fnnbench.report: xor_single_neuron.md -> parent run ")
    page_link = page_link.split(": ", 2)[2]

    client = MlflowClient(uri)
    run = client.get_run(parent)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert len(children) == 6
    kind = client.get_experiment(run.info.experiment_id).tags.get(tn.TAG_EXPERIMENT_KIND)
    assert kind == tn.EXPERIMENT_KIND

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args = shlex.split(ui_cmd)[1:]  # the printed command: mlflow ui --backend-store-uri ...
    assert args[:2] == ["ui", "--backend-store-uri"] and args[2] == uri
    server_env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server_env.pop("MLFLOW_TRACKING_URI")
    log = open(root / "ui.log", "wb")  # noqa: SIM115 - closed after the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", *args, "--host", "127.0.0.1", "--port", str(port)],
        cwd=root, env=server_env, stdout=subprocess.DEVNULL, stderr=log,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow ui did not answer /health: "
                            + (root / "ui.log").read_text()[-2000:])
            time.sleep(0.5)
        yield {
            "base": base,
            "parent": parent,
            "run": run,
            "children": children,
            "runs_link": runs_link.replace(tn.UI_URL, base, 1),
            "page_link": page_link.replace(tn.UI_URL, base, 1),
            "reports": root / "reports",
        }
    finally:  # the server's process group: it and whatever it started
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def browser(ui, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _browser()
    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def _wait(browser, what: str, check, timeout: float = WAIT_S):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def probe(d):
        try:
            return check(d)
        except WebDriverException:
            return False

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.5).until(probe)
    except Exception as exc:
        text = browser.find_element("tag name", "body").text[:1500]
        raise AssertionError(f"{what}: not seen at {browser.current_url}\n{text}") from exc


def _shot(browser, path: Path) -> Path:
    browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == PNG_MAGIC
    return path


def test_the_printed_link_opens_the_runs_view_with_the_parent_and_its_jobs(ui, browser, tmp_path):
    parent, children = ui["parent"], ui["children"]
    browser.get(ui["runs_link"])
    row = f"[role=row][row-id='{parent}']"
    _wait(browser, "the parent run's row", lambda d: d.find_elements("css selector", row))
    url = browser.current_url
    assert f"/#/experiments/{ui['run'].info.experiment_id}/runs?" in url, url
    assert "workflowType=machine_learning" in url and "/overview" not in url
    # the search: 6 jobs and their parent (the count renders after the first rows)
    _wait(browser, "7 matching runs", lambda d: "7 matching runs" in d.find_element(
        "tag name", "body").text)
    body = browser.find_element("tag name", "body").text
    assert ui["run"].info.run_name == "xor_single_neuron" and "xor_single_neuron" in body
    _shot(browser, tmp_path / "runs-collapsed.png")

    # expand the parent: the button before its name in the Run Name cell
    name_cell = f"{row} [role=gridcell][col-id*='Run Name']"
    _wait(browser, "the expand button", lambda d: d.find_element(
        "css selector", f"{name_cell} button").is_displayed())
    browser.find_element("css selector", f"{name_cell} button").click()
    for child in children:
        sel = f"[role=row][row-id='{child.info.run_id}'] [role=gridcell][col-id*='Run Name']"
        name = child.info.run_name
        assert name
        _wait(browser, f"job {name}", lambda d, s=sel, n=name: any(
            n in c.text for c in d.find_elements("css selector", s)))
    body = browser.find_element("tag name", "body").text
    assert "model.hidden_sizes=[4],seed=2" in body and "model.hidden_sizes=[],seed=0" in body
    _shot(browser, tmp_path / "runs.png")


def test_the_parent_runs_artifacts_hold_the_report_page_and_its_pngs(ui, browser, tmp_path):
    parent = ui["parent"]
    assert f"/runs/{parent}/artifacts/report/xor_single_neuron.md?" in ui["page_link"]
    browser.get(ui["page_link"])  # the link the report printed: the page, rendered
    title = "A single neuron cannot solve XOR"
    _wait(browser, "the rendered page", lambda d: d.find_elements(
        "xpath", f"//h1[contains(., '{title}')]"))
    body = browser.find_element("tag name", "body").text
    assert "Artifacts" in body and "report/xor_single_neuron.md" in body
    assert "img" in body.splitlines()  # the figures' folder in the artifact tree
    _shot(browser, tmp_path / "artifacts-page.png")

    pngs = sorted(p.name for p in (ui["reports"] / "img").glob("xor_single_neuron-*.png"))
    assert pngs, list((ui["reports"] / "img").iterdir())

    def node(text: str):  # a name in the artifact tree
        return browser.find_element("xpath", f"//*[normalize-space(text())='{text}']")

    node("img").click()  # open the figures' folder: every figure of the page is in the tree
    _wait(browser, f"{pngs[0]} in the tree", lambda d: node(pngs[0]).is_displayed())
    _wait(browser, f"all of {pngs} in the tree", lambda d: all(
        name in d.find_element("tag name", "body").text for name in pngs))
    node(pngs[0]).click()  # then show the first figure

    width = int.from_bytes((ui["reports"] / "img" / pngs[0]).read_bytes()[16:20], "big")

    def shown(d):  # the preview: the PNG fetched from the run's artifacts, decoded
        return [i for i in d.find_elements("css selector", "img.rc-image-img")
                if d.execute_script("return arguments[0].naturalWidth", i) == width]

    _wait(browser, f"the figure {pngs[0]} ({width} px wide)", shown)
    # the preview's path (the UI re-renders the tree around it: waited for, not read once)
    _wait(browser, f"report/img/{pngs[0]} on the page",
          lambda d: f"report/img/{pngs[0]}" in d.find_element("tag name", "body").text)
    _shot(browser, tmp_path / "artifacts-png.png")
