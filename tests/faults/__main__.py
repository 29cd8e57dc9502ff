"""`python -m tests.faults`: the fault suite by hand."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __doc__ as about
from .plan import FULL, SHORT
from .run import runs


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=(about or "").split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full suite (4 min of load a run), not the short one")
    parser.add_argument("--runs", type=int, default=1, help="runs in a row, each with its own seed")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--keep", type=Path, help="copy each run's process logs and data here")
    args = parser.parse_args()
    scale = FULL if args.full else SHORT
    failed = 0
    for report in runs(scale, [args.seed + i for i in range(args.runs)], args.keep):
        print(report.render(), flush=True)
        failed += not report.ok
    print(f"{args.runs - failed} of {args.runs} runs passed")
    return 1 if failed else 0


sys.exit(main())
