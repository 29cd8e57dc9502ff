"""Run every benchmark in one go and print the Markdown table (also written with the JSON)."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from contextlib import nullcontext
from importlib.metadata import version
from pathlib import Path

import redis

from dlrq.cli.embedded import embedded_server

from .analytics_cost import thirty_days, worker_rates
from .capacity import realistic
from .ceiling import ceiling
from .harness import LOAD_CORE, ROOT, server_on
from .readers import heavy_pages
from .replica import quick_acks, replica_of, with_and_without_wait
from .report import (
    BARE,
    DLRQ_INGEST,
    DLRQ_INGEST_ALWAYS,
    DLRQ_INGEST_READERS,
    QUICKACK_PAIR,
    REPLICA_PAIR,
    markdown,
)
from .run import ingest_designs, ingest_rows, memory_per_message, run_ingest, run_workers, sustained
from .sweep import sweep_lag


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    packages = ("starlette", "uvicorn", "redis", "rq")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "python": platform.python_version(),
        **{name: version(name) for name in packages},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="length of each load run (default 8)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each ingest design, alternating their order; the best is kept (default 3)")
    parser.add_argument("--cap", type=float, default=15, help="longest drain measurement per worker (default 15)")
    parser.add_argument("--steps", type=int, default=5, help="bisection steps for the sustained rate (default 5)")
    parser.add_argument("--messages", type=int, default=100_000, help="messages for the memory figure")
    parser.add_argument("--realistic", type=int, default=2000, help="messages of the realistic mix (capacity)")
    parser.add_argument("--registrations", type=int, default=100_000, help="registrations for the sweep's figure")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--ingest-only", action="store_true", help="measure the ingest designs only (no table)")
    args = parser.parse_args()

    express = shutil.which("node") is not None and (ROOT / "bench/express/node_modules/express").is_dir()
    if not express:
        print("Express baseline skipped: run bench/run.sh (it installs express and body-parser with npm)")
    results: dict = {"machine": machine(), "settings": vars(args) | {"out": str(args.out)}}
    with tempfile.TemporaryDirectory() as data, embedded_server(Path(data), "everysec") as url:
        client = redis.Redis.from_url(url)
        results["machine"]["server"] = "valkey " + client.info("server")["valkey_version"] \
            if "valkey_version" in client.info("server") else "redis " + client.info("server")["redis_version"]
        heavy_pages(client, url)
        # The ingest on one core, wrk and the server(s) it writes to on the other.
        with server_on(client, LOAD_CORE):
            results["ingest"] = ingest_rows(url, express, client, args.seconds, args.rounds)
            print("ingest: dlrq ingest on a server with appendfsync always ...", flush=True)
            argv, env, queue = ingest_designs(url, express)[DLRQ_INGEST]
            with tempfile.TemporaryDirectory() as strict, embedded_server(Path(strict), "always") as always_url:
                with redis.Redis.from_url(always_url) as strict_client, server_on(strict_client, LOAD_CORE):
                    results["ingest"].append(run_ingest(DLRQ_INGEST_ALWAYS, argv,
                                                        {**env, "DLRQ_REDIS_URL": always_url},
                                                        queue, strict_client, args.seconds, 90))
            # The host as it is, then with the quickack routes the README prescribes; each pair on a
            # primary of its own: on the shared server the replica would first copy, then rewrite,
            # the backlog of every row before (its forks and writes on wrk's core).
            for names, routes, tag in ((REPLICA_PAIR, nullcontext(True), 500), (QUICKACK_PAIR, quick_acks(), 600)):
                print(f"ingest: {names[0].rsplit(',', 1)[0]}, DLRQ_ACK_REPLICAS=0 and 1 alternately ...", flush=True)
                with routes as applied:
                    if not applied:
                        print("  skipped: the loopback routes cannot be given quickack here (root and iproute2 needed)")
                        continue
                    with (tempfile.TemporaryDirectory() as pair, embedded_server(Path(pair), "everysec") as pair_url,
                          redis.Redis.from_url(pair_url) as primary, server_on(primary, LOAD_CORE),
                          tempfile.TemporaryDirectory() as copy, replica_of(primary, Path(copy), LOAD_CORE)):
                        results["ingest"] += with_and_without_wait(argv, {**env, "DLRQ_REDIS_URL": pair_url}, queue,
                                                                   primary, args.seconds, names, tag)
        by_name = {r["design"]: r for r in results["ingest"]}
        if args.ingest_only:
            for r in results["ingest"]:
                print(f"{r['design']:32} {r['rps']:8.0f} req/s ({r['rps'] / by_name[BARE]['rps']:4.0%} of bare) "
                      f"p50 {r['p50_ms']:5.1f} p99 {r['p99_ms']:5.1f} ms, {r.get('receipts_per_job', 0):.1f}/job")
            return
        print("workers ...", flush=True)
        # The backlog: what every dlrq row on this server stored (the `always` and replica rows had their own).
        dlrq_rows = (DLRQ_INGEST, DLRQ_INGEST_READERS)
        backlog = sum(by_name[name]["stored"] for name in dlrq_rows)
        results["workers"] = run_workers(url, client, backlog, args.cap)
        client.flushdb()
        print("end to end ...", flush=True)
        results["end_to_end"] = sustained(url, client, by_name["dlrq ingest"]["rps"], args.seconds, args.steps)
        client.flushdb()
        print("memory ...", flush=True)
        results["memory"] = memory_per_message(url, args.messages)
        print(f"capacity: {args.realistic:,} realistic messages through an ingest and a worker ...", flush=True)
        results["capacity"] = realistic(url, args.realistic)
        print("analytics: the worker with them on and off, 30 days of them in memory ...", flush=True)
        results["analytics"] = {"workers": worker_rates(url, client, 60_000, args.cap),
                                "memory": thirty_days(url)}
        print(f"the sweep: {args.registrations:,} registrations ...", flush=True)
        results["sweep"] = sweep_lag(url, args.registrations)
        print("one primary's ceiling: 1, 2, 4 workers ...", flush=True)
        results["ceiling"] = ceiling(url, client, by_name[DLRQ_INGEST]["redis_us_per_receipt"])
    table = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    (args.out / f"{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stamp}.md").write_text(table)
    print(table)
    print(f"written: {args.out / stamp}.json and .md")


if __name__ == "__main__":
    main()
