"""The preview in a real JupyterLab, driven by Playwright in Debian's headless Chromium.

JupyterLab runs on loopback with a token and throwaway config, data and runtime folders,
over a temporary copy of ``notebooks/`` and ``sample_payloads/``. The test opens the
quickstart notebook, runs all cells from the Run menu, waits for the preview widget,
picks another payload and checks that the events shown change, then saves a screenshot
to ``test-artifacts/preview.png``. JupyterLab (and its kernels) are stopped even when the
test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests._servers import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
NOTEBOOK = "notebooks/00_quickstart.ipynb"
ARTIFACTS = ROOT / "test-artifacts"


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path


def _stop(proc: subprocess.Popen[bytes], url: str, token: str) -> None:
    # ask the server to shut its kernels and itself down; then make sure of it
    try:
        httpx.post(f"{url}/api/shutdown", headers={"Authorization": f"token {token}"}, timeout=10)
        proc.wait(timeout=20)
    except (httpx.HTTPError, subprocess.TimeoutExpired):
        pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Lab]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (make test does) to install Debian's Chromium")
    root = tmp_path / "root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "sample_payloads", root / "sample_payloads")
    config, data, runtime = (tmp_path / n for n in ("config", "data", "runtime"))
    (config / "labconfig").mkdir(parents=True)
    # no news pop-up over the notebook, and no call out for it
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                f"--LabApp.user_settings_dir={config / 'lab-settings'}",
                f"--LabApp.workspaces_dir={config / 'lab-workspaces'}",
                # the extension manager would query PyPI from the browser session
                "--LabApp.extension_manager=readonly",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Lab(url, token, root, log)
    finally:
        _stop(proc, url, token)


def test_preview_renders_and_follows_the_picker(lab: Lab) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1700})
        try:
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?reset&token={lab.token}")
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=90_000)
            # JupyterLab may ask which kernel to start; the notebook's own (Python 3) is preselected
            accept = page.locator(".jp-Dialog .jp-mod-accept")
            try:
                accept.wait_for(timeout=15_000)
                accept.click()
            except PlaywrightTimeout:
                pass
            # the kernel must be up before Run All, or the run is queued behind its start
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=90_000)

            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            preview = page.locator(".segfn-preview").first
            preview.wait_for(timeout=60_000)
            # the last cell approves; once its line is out, every cell has run
            expect(page.get_by_text("stripe_source.approved.jsonl 13 approved outputs")).to_be_visible(timeout=120_000)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.all_inner_texts()

            # JupyterLab renders cells lazily: bring the first preview back into view
            preview.scroll_into_view_if_needed()
            picker = preview.locator(".segfn-picker select")
            detail = preview.locator(".segfn-detail")
            expect(picker.locator("option")).to_have_count(13)
            expect(detail).to_contain_text("Segment events", timeout=30_000)
            detail.scroll_into_view_if_needed()
            before = detail.inner_text()
            assert "stripe/charge.succeeded.guest.json" in before  # the first payload is selected
            assert "Invoice Paid" not in before

            label = next(t for t in picker.locator("option").all_inner_texts() if "invoice.paid.json" in t)
            picker.select_option(label=label)
            expect(detail).to_contain_text("Invoice Paid", timeout=30_000)
            after = detail.inner_text()
            assert after != before
            assert "stripe/invoice.paid.json" in after and "guest charges" not in after

            preview.screenshot(path=str(ARTIFACTS / "preview.png"))
        except Exception:
            # what the page looked like when it went wrong, beside the server's log
            page.screenshot(path=str(ARTIFACTS / "preview-failure.png"), full_page=True)
            shutil.copy(lab.log, ARTIFACTS / "jupyterlab.log")
            raise
        finally:
            browser.close()
    assert (ARTIFACTS / "preview.png").stat().st_size > 10_000
