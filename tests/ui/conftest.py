"""On a failing browser test, keep what the browser showed: a screenshot and the page's HTML
next to the test's screenshots (``FAILED-<test>.png`` / ``.html``), named in the failure report."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    page, folder = item.funcargs.get("page"), item.funcargs.get("shots")
    if report.when != "call" or not report.failed or page is None or folder is None:
        return
    stem = Path(folder) / f"FAILED-{item.name}"
    try:
        page.screenshot(path=f"{stem}.png", full_page=False)
        Path(f"{stem}.html").write_text(page.content())
        saved = f"screenshot {stem}.png\npage HTML {stem}.html\naddress {page.url}"
    except Exception as exc:  # the browser itself may be what failed
        saved = f"no screenshot of the failure ({type(exc).__name__}: {exc})"
    report.sections.append(("UI state at failure", saved))
