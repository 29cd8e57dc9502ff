"""MkDocs hooks: the reference tables are made from the code at each build, so that they cannot drift.

A page asks for one with a marker line: `<!-- generated: settings -->` (every DLRQ_* setting, from the
Settings model), `<!-- generated: error-codes -->` (dlrq.core.errors), `<!-- generated: benchmark -->`
(the latest bench/results/*.md) and `<!-- generated: fault-runs -->` (the latest bench/results/faults-*.json).
The CLI page is mkdocs-click's, from the click commands themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import SecretStr

from dlrq.core.errors import CODES
from dlrq.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def on_page_markdown(markdown: str, page: object, config: object, files: object) -> str:
    for name, make in GENERATED.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown


def settings_table() -> str:
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `DLRQ_{name.upper()}` | {_default(field.default)} | {_meaning(field)} |")
    return "\n".join(rows)


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return f"`{','.join(value)}`" if value else "unset"
    if isinstance(value, SecretStr):
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _meaning(field: object) -> str:
    description = getattr(field, "description", None) or ""
    limits = []
    for constraint in getattr(field, "metadata", []):
        for attribute, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            bound = getattr(constraint, attribute, None)
            if bound is not None:
                limits.append(f"{sign} {bound}")
    return description + (f" ({', '.join(limits)})" if limits else "")


def error_codes() -> str:
    rows = ["| status | `error` | meaning |", "|---:|---|---|"]
    for code in sorted(CODES.values(), key=lambda c: (c.status, c.code)):
        rows.append(f"| {code.status} | `{code.code}` | {code.meaning} |")
    return "\n".join(rows)


def benchmark() -> str:
    runs = sorted(p for p in RESULTS.glob("*.md") if not p.name.startswith("faults-"))
    if not runs:
        return "*No benchmark run is recorded yet: run `bash bench/run.sh`.*"
    return f"The latest run, `bench/results/{runs[-1].name}`:\n\n" + runs[-1].read_text()


def fault_runs() -> str:
    reports = sorted(RESULTS.glob("faults-*.json"))
    if not reports:
        return "*No fault run is recorded yet: run `python -m tests.faults --full --out bench/results`.*"
    rows = ["| run | edition | result | receipts to deliver | acknowledged | lost | wrong statuses | events | "
            "duplicate calls | failed jobs | hostile receipts |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for path in reports[-12:]:
        r = json.loads(path.read_text())
        hostile = ", ".join(f"{k} {v}" for k, v in sorted(r.get("hostile", {}).items())) or "–"
        rows.append(f"| `{path.stem}` | {r['edition']} | {'PASS' if r['ok'] else 'FAIL'} | {r['planned']:,} | "
                    f"{r['acknowledged']:,} | {len(r['lost'])} | {len(r['wrong_status'])} | {r['expected_events']:,} | "
                    f"{sum(r['duplicate_calls'].values())} | {r['failed_jobs']} | {hostile} |")
    latest = json.loads(reports[-1].read_text())
    recovery = ["", f"Recovery in `{reports[-1].stem}` (longest, until a receipt sent as the fault ended was "
                "acknowledged and applied):", "", "| fault | seconds |", "|---|---:|"]
    recovery += [f"| {fault} | {max(times):.1f} |" for fault, times in latest.get("recovery", {}).items()]
    return "\n".join(rows + recovery)


GENERATED = {"settings": settings_table, "error-codes": error_codes, "benchmark": benchmark,
             "fault-runs": fault_runs}
