"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright; no browser download).

A person's path: enter the token, watch the workers, submit a job and see it finish with its
output, terminate a running job, drain a worker, change the policy and see the balancer take it.
Screenshots go to a temp dir; with JB_SCREENSHOTS=docs/screenshots they refresh the docs' pictures
(a plain test run leaves the tracked files alone).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import Cluster
from tests.helpers import REPO, wait_for
from tests.web.conftest import TOKEN, Live

TEMP_SHOTS = Path(tempfile.gettempdir()) / "jb-screenshots"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FLAGS += ["--disable-component-update", "--no-first-run"]
SHOTS = REPO / os.environ.get("JB_SCREENSHOTS", "") if os.environ.get("JB_SCREENSHOTS") else TEMP_SHOTS
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        the_browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield the_browser
        the_browser.close()


@pytest.fixture
def page(browser: Browser, live_cluster: tuple[Live, Cluster]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    the_page = context.new_page()
    the_page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    the_page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield the_page
    context.close()
    assert errors == [], f"errors in the page: {errors}"


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, live: Live) -> None:
    page.goto(live.url)
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "wrong")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_have_text("That token was refused.")
    page.fill("#token", TOKEN)
    page.click("#login-form button")
    expect(page.locator("#login")).to_be_hidden()


def submit(page: Page, command: str) -> None:
    page.goto(page.url.split("#")[0] + "#/jobs")
    page.fill("#submit-form input[name=command]", command)
    page.click("#submit-form button[type=submit]")
    expect(page.locator("h1 .mono")).to_be_visible()


def test_a_person_runs_watches_and_steers_jobs(page: Page, live_cluster: tuple[Live, Cluster]) -> None:
    live, cluster = live_cluster
    log_in(page, live)

    expect(page.locator("#stat-workers .value")).to_have_text("2")
    expect(page.locator("tr[data-worker=w1]")).to_contain_text("running")
    expect(page.locator("#live")).to_have_text("live")

    submit(page, "echo hello from the browser; echo a warning >&2")
    expect(page.locator(".detail .badge").first).to_have_text("succeeded")
    expect(page.locator("pre.stdout")).to_have_text("hello from the browser\n")
    expect(page.locator("pre.stderr")).to_have_text("a warning\n")
    expect(page.locator(".timeline")).to_contain_text("succeeded")
    shot(page, "job")

    submit(page, "echo started; sleep 60")
    expect(page.locator("pre.stdout")).to_have_text("started\n")
    expect(page.locator(".detail .badge").first).to_have_text("running")
    page.click("button:has-text('Terminate')")
    expect(page.locator(".detail .badge").first).to_have_text("cancelled")
    expect(page.locator("dl.spec")).to_contain_text("130")
    shot(page, "job-terminated")

    page.click("a[data-nav=jobs]")
    expect(page.locator("table.jobs tbody tr")).to_have_count(2)
    page.fill("input[name=q]", "hello")
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    page.fill("input[name=q]", "")
    expect(page.locator("table.jobs tbody tr")).to_have_count(2)
    shot(page, "jobs")

    page.click("a[data-nav=overview]")
    expect(page.locator("#stat-succeeded .value")).to_have_text("1")
    shot(page, "overview")


def test_a_person_drains_a_worker_and_changes_the_policy(page: Page, live_cluster: tuple[Live, Cluster]) -> None:
    live, cluster = live_cluster
    log_in(page, live)

    page.click("a[data-nav=workers]")
    page.click("tr[data-worker=w2] button:has-text('Drain')")
    expect(page.locator("tr[data-worker=w2] .badge")).to_have_text("draining")
    expect(page.locator("tr[data-worker=w2] button")).to_have_text("Resume")
    shot(page, "workers")
    page.click("tr[data-worker=w2] button:has-text('Resume')")
    expect(page.locator("tr[data-worker=w2] .badge")).to_have_text("running")

    page.click("a[data-nav=settings]")
    page.fill("input[name=policy]", "no-such-policy")
    page.click("#settings-form button[type=submit]")
    expect(page.locator("#settings-form .error")).to_contain_text("policy")
    page.fill("input[name=policy]", "round-robin")
    page.fill("input[name=max_jobs_per_worker]", "1")
    page.click("#settings-form button[type=submit]")
    expect(page.locator("main")).to_contain_text("Saved: policy = round-robin, max_jobs_per_worker = 1")
    shot(page, "settings")
    settings = cluster.client.settings()
    assert (settings.policy, settings.max_jobs_per_worker) == ("round-robin", 1)
    wait_for(lambda: "policy is now 'round-robin'" in cluster.log("b1"), 10, what="the balancer takes the new policy")
    page.reload()
    expect(page.locator("input[name=policy]")).to_have_value("round-robin")


def test_a_person_writes_runs_and_deletes_a_named_script(page: Page, live_cluster: tuple[Live, Cluster]) -> None:
    live, cluster = live_cluster
    log_in(page, live)

    page.click("a[data-nav=scripts]")
    expect(page.locator("table.scripts")).to_contain_text("No scripts yet.")
    form = page.locator("#script-form")
    form.locator("input[name=name]").fill("greet")
    form.locator("select[name=language]").select_option("bash")
    form.locator("textarea[name=body]").fill('echo "hello $1 from $JB_PARAM_PLACE"')
    form.locator("button:has-text('Add parameter')").click()
    form.locator("button:has-text('Add parameter')").click()
    rows = form.locator(".param-row")
    rows.nth(0).locator("input[name=param-name]").fill("who")
    rows.nth(0).locator("input[name=param-required]").check()
    rows.nth(1).locator("input[name=param-name]").fill("place")
    rows.nth(1).locator("input[name=param-default]").fill("the browser")
    form.locator("button[type=submit]").click()
    expect(page.locator("#run-form")).to_contain_text("who *")
    script = cluster.client.named_scripts.get("greet")
    assert (script.language, [p.name for p in script.params]) == ("bash", ["who", "place"])
    page.fill("#run-form input[name=param-who]", "ada")
    shot(page, "script")

    page.click("#run-form button[type=submit]")
    expect(page.locator(".detail .badge").first).to_have_text("succeeded")
    expect(page.locator("pre.stdout")).to_have_text("hello ada from the browser\n")
    expect(page.locator("dl.spec")).to_contain_text('greet who="ada" place="the browser"')

    page.click("a[data-nav=scripts]")
    expect(page.locator("tr[data-script=greet]")).to_contain_text("bash")
    shot(page, "scripts")
    page.click("tr[data-script=greet] a")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Delete')")
    expect(page.locator("table.scripts")).to_contain_text("No scripts yet.")
    assert cluster.client.named_scripts.all() == []
