"""What a browser fetches around the console's pages (no browser needed)."""

from __future__ import annotations

import re
import time

from starlette.testclient import TestClient

from dlrq.core.calls import run
from dlrq.core.events import Event
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import register
from ingest.api import create_api
from tests.support.receipts import receipt
from workers.batch import apply
from workers.dispatch import Dispatcher


def test_the_browsers_favicon_request_finds_the_consoles_icon(redis_url):
    with TestClient(create_api(Settings(redis_url=redis_url, api_token="console-token-0123456789"))) as api:
        asked = api.get("/favicon.ico", follow_redirects=False)
        icon = api.get("/favicon.ico")
        login = api.get("/console/login")
    assert asked.status_code == 308 and asked.headers["location"] == "/console/static/favicon.svg"
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert 'rel="icon"' in login.text and "favicon.svg" in login.text


def test_an_alert_shows_the_failing_parts_status_not_err_code_0s_meaning(redis_url, r):
    """An expired part's err-code 0 is not "delivered": the overview says the part expired."""
    settings = Settings(redis_url=redis_url, api_token="console-token-0123456789")
    data = {"message": "EXP1", "attempt": 1, "part": "EXP1", "status": "expired", "err_code": "0",
            "network_code": "20801", "to": "447700900000"}
    assert Dispatcher(r, settings).raise_event(Event("permanent_failure:EXP1:1", "permanent_failure", data))
    with TestClient(create_api(settings)) as api:
        _signed_in(api, settings.api_token.get_secret_value())
        page = api.get("/console/").text
        alerts = api.get("/console/overview.json").json()["alerts"]
    item = page[page.index('id="alerts"'):page.index("</ul>", page.index('id="alerts"'))]
    assert "part expired" in " ".join(item.split()) and "delivered" not in item, item
    assert alerts[0]["status"] == "expired" and alerts[0]["err_meaning"] == "" and "to" not in alerts[0]


def _signed_in(api: TestClient, token: str) -> None:
    login = api.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
    assert api.post("/console/login", data={"csrf": csrf, "token": token}).status_code == 200


def test_a_client_ref_search_says_the_true_total_and_pages_through_every_message(redis_url, r):
    settings = Settings(redis_url=redis_url, api_token="console-token-0123456789")
    now = time.time()
    for i in range(120):
        body = {"message-count": "1", "messages": [{"message-id": f"BF{i:03d}", "to": "447700900000", "status": "0",
                                                    "client-ref": "black-friday-2026"}]}
        run(r, register(parse_send(body), settings, now=now - 1000 + i * 2))
    seen, path = [], "/console/messages?q=black-friday-2026"
    with TestClient(create_api(settings)) as api:
        _signed_in(api, settings.api_token.get_secret_value())
        while path:
            page = api.get(path).text
            if not seen:
                assert "Messages 1–50 of 120 sent with client-ref black-friday-2026" in page, page
            seen += re.findall(r'<th scope="row"><a href="\?q=(BF\d+)"', page)
            older = re.search(r'rel="next" href="([^"]+)"', page)
            path = "/console/messages" + older.group(1).replace("&amp;", "&") if older else None
    assert seen == [f"BF{i:03d}" for i in reversed(range(120))], "every message once, newest first"


def test_failed_work_links_to_the_messages_it_was_about_and_the_overview_to_failed_work(redis_url, r):
    from rq import Queue
    from rq.serializers import JSONSerializer

    from workers.worker import build_worker

    settings = Settings(redis_url=redis_url, api_token="console-token-0123456789")
    queue = Queue(settings.handler_queue, connection=r, serializer=JSONSerializer)
    queue.enqueue("workers.handlers.deliver", {"id": "permanent_failure:LINK1:1", "kind": "permanent_failure",
                                               "message": "LINK1"}, "tests.support.probe.explode", job_id="boom")
    build_worker(settings).work(burst=True, logging_level="WARNING")
    with TestClient(create_api(settings)) as api:
        _signed_in(api, settings.api_token.get_secret_value())
        failed = api.get("/console/failed").text
        overview = api.get("/console/").text
    assert 'href="/console/messages?q=LINK1">LINK1</a>' in failed, failed
    assert re.search(r'data-field="failed"><a href="/console/failed">1</a>', overview), overview


def test_the_networks_page_puts_the_worst_first_marks_it_and_takes_a_span(redis_url, r):
    settings = Settings(redis_url=redis_url, api_token="console-token-0123456789")
    receipts = []
    for network, failures in (("23410", 1), ("26201", 12), ("20801", 3)):
        for i in range(20):
            status, code = ("failed", "6") if i < failures else ("delivered", "0")
            receipts.append(Receipt(receipt(f"N{network}-{i}", status, 5, code, **{"network-code": network}),
                                    utc_now_iso()))
    apply(r, receipts, settings)
    with TestClient(create_api(settings)) as api:
        _signed_in(api, settings.api_token.get_secret_value())
        page = api.get("/console/networks").text
        hour = api.get("/console/networks", params={"span": "1h"}).text
        week = api.get("/console/networks", params={"span": "7d"}).text
    rows = re.findall(r'<th scope="row" data-value="(\d+)">', page)
    assert rows == ["26201", "20801", "23410"], "worst delivery rate first"
    flagged = re.findall(r'<tr class="worse">\s*<th scope="row" data-value="(\d+)">', page)
    assert flagged == ["26201"], "40% against 73% overall is marked; 85% is not"
    assert re.search(r'data-value="12">12</td>', page), "the failed column"
    assert 'aria-current="page">Last hour' in hour and 'aria-current="page">Last 7 days' in week
    until = re.search(r"UTC to (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", page).group(1)
    assert until <= time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "never a time still to come"
    assert re.findall(r'<th scope="row" data-value="(\d+)">', week) == rows
