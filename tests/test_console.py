"""The web console in a real browser (Debian's Chromium, driven by Playwright) against real
processes: an ingest, a worker, the embedded server and a webhook receiver for the alerts.

Each page's screenshot is written under the test's output directory (tmp_path), or under
$DLRQ_SCREENSHOTS when it is set.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from dlrq.core import failed as failed_jobs
from dlrq.core.settings import Settings
from tests.support.processes import dlrq_env, eventually, free_port, spawn, stop, wait_http
from tests.support.receipts import receipt
from tests.support.receivers import WebhookReceiver
from tests.support.tools import need

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "console-test-token-0123456789"
SECRET = "hook-secret"
HOOK = "/webhooks/delivery-receipt"
NUMBER = "447700900123"
# Vonage's "anti-spam rejection": permanent, so the message fails at once and raises an alert.
SPAM = "6"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = need("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, httpx.Client, WebhookReceiver]]:
    """ingest, api (the console) and worker, alerts sent to a webhook receiver that fails until told
    otherwise; their logs in tmp_path/logs."""
    hook = WebhookReceiver(SECRET)
    hook.mode = "error"
    port, api_port = free_port(), free_port()
    env = dlrq_env(redis_url, DLRQ_PORT=str(port), DLRQ_API_PORT=str(api_port), DLRQ_API_TOKEN=TOKEN,
                   DLRQ_MAINTENANCE_INTERVAL="1", DLRQ_ALERT_HANDLERS="webhook", DLRQ_RETRY_HANDLERS="log",
                   DLRQ_HANDLER_RETRY_BACKOFF="1", DLRQ_WEBHOOK_URL=hook.url, DLRQ_WEBHOOK_SECRET=SECRET,
                   DLRQ_BATCH_MAX_WAIT_MS="2")
    logs = (tmp_path / "logs").open("wb")
    procs = [spawn("ingest", env, stderr=logs), spawn("api", env, stderr=logs), spawn("worker", env, stderr=logs)]
    ingest_base, base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"
    try:
        wait_http(f"{ingest_base}/healthz")
        wait_http(f"{base}/healthz")
        with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            api.ingest = ingest_base  # type: ignore[attr-defined]  # where receipts go
            yield base, api, hook
    finally:
        stop(procs)
        hook.close()
        logs.close()


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "screenshots"
    directory.mkdir()
    yield directory
    if os.environ.get("DLRQ_SCREENSHOTS"):
        shutil.copytree(directory, os.environ["DLRQ_SCREENSHOTS"], dirs_exist_ok=True)


def register(api: httpx.Client, part_ids: list[str], client_ref: str, network: str = "23410") -> str:
    parts = [{"to": NUMBER, "message-id": part, "status": "0", "message-price": "0.03330000",
              "network": network, "client-ref": client_ref} for part in part_ids]
    answer = api.post("/messages", json={"message-count": str(len(parts)), "messages": parts})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def post(api: httpx.Client, *receipts: dict[str, str]) -> None:
    """To the ingest's webhook (the api serves everything else)."""
    for params in receipts:
        assert httpx.post(api.ingest + HOOK, json={**params, "msisdn": NUMBER}).status_code == 204  # type: ignore[attr-defined]


def settled(api: httpx.Client, message_id: str, status: str) -> None:
    eventually(lambda: api.get(f"/messages/{message_id}").json().get("status") == status,
               what=f"{message_id} to be {status}")


def sign_in(page: Page, base: str, shots: Path) -> None:
    page.goto(f"{base}/console/")
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.get_by_label("API token").fill("not the token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That is not the API token.")
    page.screenshot(path=shots / "login.png", full_page=True)
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")


def test_console_shows_delivery_finds_messages_and_requeues_failed_work(stack, browser, shots, r, tmp_path):
    base, api, hook = stack
    # Two messages for one campaign on 23410 (one of two parts), one rejected as spam on 20801.
    first = register(api, ["0C00000000000A01", "0C00000000000A02"], "campaign-42")
    second = register(api, ["0C00000000000B01"], "campaign-42")
    spam = register(api, ["0C00000000000C01"], "promo-7", network="20801")
    post(api, receipt("0C00000000000A01", "accepted", 1), receipt("0C00000000000A01", "delivered", 4),
         receipt("0C00000000000A02", "delivered", 5), receipt("0C00000000000B01", "delivered", 3),
         receipt("0C00000000000C01", "rejected", 2, SPAM, **{"network-code": "20801"}))
    settled(api, first, "delivered")
    settled(api, second, "delivered")
    settled(api, spam, "failed")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused_by_policy: list[str] = []
    page.on("console", lambda message: refused_by_policy.append(message.text)
            if "Content Security Policy" in message.text else None)
    sign_in(page, base, shots)

    # The overview counts the parts just settled, and refreshes itself when more arrive.
    today = page.locator("#today")
    expect(today.locator('[data-field="delivered"]')).to_have_text("3")
    expect(today.locator('[data-field="rejected"]')).to_have_text("1")
    expect(page.locator("#alerts")).to_contain_text("permanent_failure")
    expect(page.locator("#updated")).to_contain_text("updated", timeout=15_000)
    page.evaluate("window.notReloaded = true")
    late = register(api, ["0C00000000000D01"], "campaign-43")
    post(api, receipt("0C00000000000D01", "delivered", 7))
    settled(api, late, "delivered")
    expect(today.locator('[data-field="delivered"]')).to_have_text("4", timeout=15_000)
    expect(page.locator("#rate-accepted")).not_to_have_text(re.compile(r"^(–|0\.00)$"), timeout=15_000)
    assert page.evaluate("window.notReloaded") is True, "the overview reloaded instead of refreshing itself"
    assert page.locator("#chart-hour canvas").count() == 1 and page.locator("#chart-day canvas").count() == 1
    page.screenshot(path=shots / "overview.png", full_page=True)

    # Networks: each one posted, with its delivery rate, and the spam code's meaning.
    page.get_by_role("link", name="Networks").click()
    rows = page.locator("#analytics tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#analytics tbody tr", has_text="23410")).to_contain_text("100.0%")
    rejected = page.locator("#analytics tbody tr", has_text="20801")
    expect(rejected).to_contain_text("0.0%")
    expect(rejected).to_contain_text("anti-spam rejection")
    by_rate = page.get_by_role("button", name="delivery rate")
    by_rate.click()  # the best first
    expect(rows.first).to_contain_text("23410")
    by_rate.click()  # the worst first
    expect(rows.first).to_contain_text("20801")
    expect(page.locator("th", has=by_rate)).to_have_attribute("aria-sort", "ascending")
    expect(page.locator("#analytics tbody tr", has_text="23410")).to_contain_text("O2 UK Ltd. (GB)")
    expect(rejected).to_contain_text("Orange France (FR)")
    page.screenshot(path=shots / "networks.png", full_page=True)
    page.get_by_role("link", name="Last 7 days").click()
    expect(page.get_by_role("link", name="Last 7 days")).to_have_attribute("aria-current", "page")
    expect(rows).to_have_count(2)
    page.get_by_role("link", name="Last hour").click()
    expect(page.get_by_role("link", name="Last hour")).to_have_attribute("aria-current", "page")

    # A message found by its second part's id: its timeline shows every receipt, the deciding ones marked.
    page.get_by_role("link", name="Messages").click()
    page.get_by_label("Logical id").fill("0C00000000000A02")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Message {first}")
    timeline = page.locator("ol.timeline")
    expect(timeline.locator("li", has_text="attempt 1 registered")).to_have_count(1)
    for part, statuses in (("0C00000000000A01", ["accepted", "delivered"]), ("0C00000000000A02", ["delivered"])):
        receipts = timeline.locator("li:not(.decides)", has_text=part).filter(has_not_text="registered")
        expect(receipts).to_have_count(len(statuses))
        for item, status in zip(receipts.all(), statuses):
            expect(item).to_contain_text(status)
        expect(timeline.locator("li.decides", has_text=part)).to_contain_text("is delivered")
    assert NUMBER not in page.content(), "the recipient's number must be masked"
    expect(page.locator(".figures")).to_contain_text(NUMBER[-2:])
    page.screenshot(path=shots / "message.png", full_page=True)

    # By client-ref: both messages of the campaign, newest first; the first opens its timeline.
    page.get_by_label("Logical id").fill("campaign-42")
    page.get_by_role("button", name="Find").click()
    found = page.locator("table tbody tr")
    expect(found).to_have_count(2)
    expect(found.first).to_contain_text(second)
    page.screenshot(path=shots / "search.png", full_page=True)
    found.nth(1).get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Message {first}")
    expect(page.locator("ol.timeline li.decides")).to_have_count(2)

    # The spam alert's webhook call failed (the receiver refuses): requeued from the page once it is mended.
    event = f"permanent_failure:{spam}:1"
    eventually(lambda: failed_jobs.count(r, Settings().queues) == 1, timeout=30,
               what="the alert's webhook call to fail for good")
    page.get_by_role("link", name="Failed work").click()
    row = page.locator("#failed tbody tr", has_text=event)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("HTTPStatusError: Server error '500 Internal Server Error'")
    page.screenshot(path=shots / "failed.png", full_page=True)
    row.get_by_role("link", name=spam).click()  # the message it was about
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Message {spam}")
    expect(page.locator("ol.timeline")).to_contain_text("permanent_failure raised")
    page.get_by_role("link", name="Overview").click()
    page.locator('#queues [data-field="failed"] a').first.click()  # the failed count leads to failed work
    expect(page.get_by_role("heading", level=1)).to_have_text("Failed work")
    hook.mode = "ok"
    row.get_by_role("button", name="Requeue").click()
    expect(page.get_by_role("status")).to_have_text("Requeued 1 job(s).")
    expect(page.locator("#failed tbody tr", has_text=event)).to_have_count(0)
    eventually(lambda: hook.calls[event] == 1, what="the requeued alert to reach the webhook")
    page.goto(f"{base}/console/messages?q={spam}")
    expect(page.locator("ol.timeline")).to_contain_text(re.compile(r"handler webhook: finished"))
    page.screenshot(path=shots / "message-failed.png", full_page=True)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.goto(f"{base}/console/failed")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.close()
    assert refused_by_policy == [], "every page works within its Content-Security-Policy"
    logs = (tmp_path / "logs").read_text()
    assert "500 Internal Server Error" in logs and NUMBER not in logs, "a failed call's log must not show the number"


def test_forms_without_the_csrf_token_or_the_session_are_refused(stack, browser, shots):
    base, _, _ = stack
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, base, shots)
    cookie = next(c for c in context.cookies() if c["name"] == "dlrq_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert page.evaluate("document.cookie") == "", "scripts must not read the session cookie"
    page.goto(f"{base}/console/failed/confirm?action=purge")
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    page.screenshot(path=shots / "confirm.png", full_page=True)

    # Signed in, without the token: refused, and nothing is done.
    missing = page.request.post(f"{base}/console/failed/purge", form={"all": "yes"}, max_redirects=0)
    forged = page.request.post(f"{base}/console/failed/purge", form={"all": "yes", "csrf": "forged"}, max_redirects=0)
    assert (missing.status, forged.status) == (403, 403)
    # With the token but not the cookie (another site's form would lack it: SameSite=Strict).
    anonymous = httpx.post(f"{base}/console/failed/purge", data={"all": "yes", "csrf": csrf})
    assert anonymous.status_code == 403
    signed_out = httpx.post(f"{base}/console/logout", data={"csrf": csrf})
    assert signed_out.status_code == 403
    # The real form passes.
    page.get_by_role("button", name=re.compile("Yes, delete")).click()
    expect(page.get_by_role("status")).to_have_text("Deleted 0 job(s).")
    context.close()
