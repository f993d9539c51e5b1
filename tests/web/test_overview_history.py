"""The overview's charts draw the history the cluster keeps: every browser, and every reload, sees the same."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from jobbalancer import Client
from tests.web.conftest import Live
from tests.web.test_browser import TIMEOUT_MS, browser, log_in  # noqa: F401 - browser is a fixture


def test_two_browsers_see_the_same_history(browser: Browser, live: Live, jb: Client) -> None:  # noqa: F811
    for finished, waiting in ((0, 0), (4, 3), (10, 1)):  # three samples, as the active balancer writes them
        jb.redis.xadd(jb.keys.history, {"finished": finished, "waiting": waiting})
    for _browser_tab in range(2):
        context = browser.new_context(viewport={"width": 1360, "height": 860})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        log_in(page, live)
        captions = page.locator(".charts figcaption")
        expect(captions.first).to_have_text("jobs finished per 5 s, last 1 min (latest 6, peak 6)")
        expect(captions.nth(1)).to_have_text("waiting depth, last 1 min (now 0, peak 3)")
        lines = page.locator(".charts svg polyline")
        assert [len(str(lines.nth(i).get_attribute("points")).split()) for i in range(2)] == [3, 3]
        context.close()
        assert errors == []


def test_without_samples_the_overview_says_so(browser: Browser, live: Live) -> None:  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    log_in(page, live)
    expect(page.locator("#history-empty")).to_contain_text("the active balancer samples the cluster every 5 s")
    context.close()
