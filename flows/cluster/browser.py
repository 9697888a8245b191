"""Approve a waiting run through the Prefect UI's resume form, in headless Chromium.

The page is the new UI's flow-run page (``/v2/runs/flow-run/<id>``): "Open menu" → "Resume",
then the form built from the run's input model, its fields named by their titles. The answer
of the resume endpoint is read from the page's own request: 201 + ACCEPT resumes the run; a 200
+ REJECT (invalid input) leaves it waiting, and is an error here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flows.cluster.processes import ClusterError

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def chromium_missing() -> str | None:
    """Why the browser step cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


def approve_in_ui(
    ui_url: str,
    run_id: str,
    *,
    code: str,
    reason: str,
    timeout: float = 60,
    screenshot: Path | None = None,
) -> float:
    """Open the run's page, fill the Resume form (Approve on, Code, Reason) and submit it.

    Returns when (``time.monotonic()``) the form was submitted; ``ClusterError`` when the UI refuses the input or
    a control is missing (the screenshot, if asked for, shows the page as it was).
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    ms = int(timeout * 1000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(ms)
        try:
            page.goto(f"{ui_url}/v2/runs/flow-run/{run_id}", wait_until="domcontentloaded")
            page.get_by_role("button", name="Open menu").click()
            page.get_by_role("menuitem", name="Resume").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_role("switch", name="Approve (Optional)").click()
            dialog.get_by_role("textbox", name="Code (Optional)").fill(code)
            dialog.get_by_role("textbox", name="Reason (Optional)").fill(reason)
            with page.expect_response(
                lambda r: r.url.endswith(f"/flow_runs/{run_id}/resume") and r.request.method == "POST"
            ) as answer:
                submitted = time.monotonic()
                dialog.get_by_role("button", name="Resume").click()
            response = answer.value
            body = json.loads(response.text() or "{}")
        except PlaywrightError as exc:
            _shoot(page, screenshot)
            raise ClusterError(f"the Resume form of run {run_id}: {str(exc).splitlines()[0]}") from None
        _shoot(page, screenshot)
        browser.close()
    if body.get("status") != "ACCEPT":
        raise ClusterError(f"the UI's resume of run {run_id} was refused: {body.get('details') or body}")
    return submitted


def _shoot(page: object, path: Path | None) -> None:
    if path is None or os.environ.get("GOVFLOW_CLUSTER_SCREENSHOTS", "1") == "0":
        return
    try:
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a screenshot is a courtesy, never the failure
        pass
