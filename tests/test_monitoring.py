"""The Grafana dashboard and the Prometheus rules, against a real Prometheus scraping a live dlrq:
every panel's query and every rule's expression returns series; promtool accepts the rules."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.processes import ROOT, dlrq_env, eventually, free_port, spawn, wait_http
from tests.support.receipts import receipt
from tests.support.sender import Sender
from tests.support.sends import send
from tests.support.tools import need

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dlrq.json"
# Where a rule's expression is cut into the measures it compares (a threshold alone is not a query).
COMPARISON = re.compile(r"\s(?:and|or|unless)\s|\s(?:[<>]=?|==|!=)\s")


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def rule_queries() -> list[str]:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    measures = []
    for rule in rules:
        for part in COMPARISON.split(" ".join(rule["expr"].split())):
            part = part.strip()
            if not re.fullmatch(r"[0-9.e+-]+", part):
                measures.append(part)
    return measures


@pytest.fixture(autouse=True)
def prometheus() -> None:
    need("prometheus")


def test_promtool_accepts_the_rules():
    result = subprocess.run([need("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_panel_and_rule_returns_series_from_a_live_dlrq(redis_url, tmp_path):
    port, api_port, prom_port = free_port(), free_port(), free_port()
    env = dlrq_env(redis_url, DLRQ_PORT=str(port), DLRQ_API_PORT=str(api_port), DLRQ_BATCH_MAX_WAIT_MS="2")
    ingest, dlrq_api, worker = spawn("ingest", env), spawn("api", env), spawn("worker", env)
    config = tmp_path / "prometheus.yml"
    # Each ingest serves its own acknowledgements, the api the deployment's figures: both are scraped.
    targets = [f"127.0.0.1:{port}", f"127.0.0.1:{api_port}"]
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "dlrq", "static_configs": [{"targets": targets}]}],
    }))
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz")
        eventually(lambda: _up(api), 30, "Prometheus to scrape dlrq")
        sender = Sender(base)
        for round_ in range(4):  # several scrapes see the counters grow
            with httpx.Client(base_url=base) as http:
                for m in range(10):
                    assert http.post("/messages", json=send([f"MON{round_}{m}"])).status_code == 201
            sender.send_all([receipt(f"MON{round_}{m}", "delivered", 5) for m in range(8)]
                            + [receipt(f"MON{round_}{m}", "failed", 5, err_code="3") for m in (8, 9)])
            httpx.post(base + "/webhooks/delivery-receipt", json={"status": "delivered"})  # a refusal, counted
            time.sleep(2)
        queries = dashboard_queries() + rule_queries()
        assert len(queries) > 20

        def empty() -> list[str]:
            return [q for q in queries if not httpx.get(f"{api}/query", params={"query": q}).json()["data"]["result"]]

        eventually(lambda: not empty(), 30, "every query to return series")
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        for process in (ingest, dlrq_api, worker):
            process.terminate()
            process.wait(20)


def _up(api: str) -> bool:
    try:
        result = httpx.get(f"{api}/query", params={"query": 'up{job="dlrq"}'}).json()["data"]["result"]
    except (httpx.TransportError, KeyError, ValueError):
        return False
    return len(result) == 2 and all(series["value"][1] == "1" for series in result)


def test_the_dashboard_is_a_grafana_dashboard_with_what_the_issue_asks():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for wanted in ("throughput", "queue depth", "oldest", "outcomes", "delivery rate", "time from registration",
                   "failed jobs", "alerts"):
        assert wanted in titles, wanted
    assert dashboard["uid"] and dashboard["templating"]["list"][0]["type"] == "datasource"
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])
    assert Path(DASHBOARD).stat().st_size < 100_000
