#!/usr/bin/env bash
# The benchmark from a fresh clone, in one command: installs what it needs, runs every
# measurement, prints the Markdown table and writes it with the JSON to bench/results/.
# Arguments go to `python -m bench` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
command -v wrk >/dev/null || { as_root apt-get update -qq && as_root apt-get install -y -qq wrk; }
command -v taskset >/dev/null || as_root apt-get install -y -qq util-linux
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet -e .
if command -v npm >/dev/null; then
  (cd bench/express && npm ci --no-audit --no-fund --silent) || echo "npm ci failed: the Express baseline is skipped" >&2
fi
exec .venv/bin/python -m bench "$@"
