"""`python -m tests.faults`: the fault suite by hand."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __doc__ as about
from .cluster import Topology
from .plan import FAILOVER_FULL, FAILOVER_SHORT, FULL, SHORT
from .run import runs


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=(about or "").split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full suite (4 min of load a run), not the short one")
    parser.add_argument("--runs", type=int, default=1, help="runs in a row, each with its own seed")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--keep", type=Path, help="copy each run's process logs and data here")
    parser.add_argument("--failover", action="store_true",
                        help="the failover edition: a primary, two replicas, three sentinels")
    parser.add_argument("--replicas", type=int, default=2, help="the failover edition's replicas")
    parser.add_argument("--ack-replicas", type=int, default=1,
                        help="DLRQ_ACK_REPLICAS of the failover edition (0 shows what it is for)")
    parser.add_argument("--min-replicas-to-write", type=int, default=1,
                        help="the failover edition's Valkey setting (0: the primary writes alone while cut off)")
    parser.add_argument("--out", type=Path, help="write each run's report here, as faults-<time>-<edition>-<seed>.json "
                        "and .md (bench/results: the docs' Reliability page shows the latest)")
    args = parser.parse_args()
    edition = "failover" if args.failover else "standalone"
    scale = {(False, False): SHORT, (True, False): FULL, (False, True): FAILOVER_SHORT,
             (True, True): FAILOVER_FULL}[(args.full, args.failover)]
    failed = 0
    topology = Topology(args.replicas, args.ack_replicas, args.min_replicas_to_write)
    for report in runs(scale, [args.seed + i for i in range(args.runs)], args.keep, edition, topology):
        print(report.render(), flush=True)
        failed += not report.ok
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            kind = f"{edition}{'-full' if args.full else ''}"
            stem = args.out / f"faults-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{kind}-{report.seed}"
            stem.with_suffix(".json").write_text(json.dumps(report.to_json(kind), indent=1) + "\n")
            stem.with_suffix(".md").write_text(report.render() + "\n")
    print(f"{args.runs - failed} of {args.runs} runs passed")
    return 1 if failed else 0


sys.exit(main())
