"""What a fault run found."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from typing import Any

# Seconds after which a worker kill's recovery is listed with when it happened.
SLOW_KILL = 15


@dataclass
class Report:
    seed: int
    planned: int = 0  # distinct receipts Vonage had to deliver
    planned_statuses: int = 0  # of which Messages API status callbacks
    http_attempts: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    acknowledged: int = 0
    not_acknowledged: int = 0  # gave up: must be 0 (the sender never gives up before the run ends)
    lost: list[str] = field(default_factory=list)
    wrong_status: list[str] = field(default_factory=list)
    expected_events: int = 0
    delivered_events: dict[str, int] = field(default_factory=dict)
    duplicate_calls: dict[str, int] = field(default_factory=dict)
    # Of those, calls made again by a handler job abandoned by a worker that died, which may have
    # been during the call (the contract's "barring a crash inside the handler").
    abandoned_calls: dict[str, int] = field(default_factory=dict)
    missing_events: dict[str, list[str]] = field(default_factory=dict)
    unexpected_events: dict[str, list[str]] = field(default_factory=dict)
    failed_jobs: int = 0
    bad_signatures: int = 0
    recovery: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    acknowledged_after: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # Answers other than 2xx from a fault's start until its probe was acknowledged, each time it happened.
    during: dict[str, list[dict[str, int]]] = field(default_factory=lambda: defaultdict(list))
    unplanned_exits: dict[str, int] = field(default_factory=dict)
    drain_seconds: float = 0.0
    drained: bool = False
    leftovers: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # faults this machine cannot inject, and why
    waits: list[float] = field(default_factory=list)  # seconds each fault waited for the group to heal
    # Seconds into the run: when each fault ended (its recovery began), and each worker kill
    # whose batches took longer than SLOW_KILL to run again (with how long they took).
    fault_ends: dict[str, float] = field(default_factory=dict)
    slow_kills: list[tuple[float, float]] = field(default_factory=list)
    # What became of the hostile sender's receipts: "poison refused", "forged acknowledged", ...
    hostile: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return (self.drained and not self.lost and not self.wrong_status and self.not_acknowledged == 0
                and not self.unexplained_duplicates and not any(self.missing_events.values())
                and not any(self.unexpected_events.values()) and self.failed_jobs == 0
                and self.bad_signatures == 0 and not self.hostile["poison acknowledged"])

    def to_json(self, edition: str) -> dict[str, Any]:
        """The report as bench/results/faults-*.json keep it (the docs' Reliability page reads them)."""
        plain = {f.name: (dict(v) if isinstance(v := getattr(self, f.name), dict) else v) for f in fields(self)}
        return {"edition": edition, "ok": self.ok, **plain}

    @property
    def unexplained_duplicates(self) -> int:
        return sum(n - self.abandoned_calls.get(handler, 0) for handler, n in self.duplicate_calls.items())

    def render(self) -> str:
        lines = [
            f"seed {self.seed}: {'PASS' if self.ok else 'FAIL'}",
            f"  receipts: {self.planned} to deliver ({self.planned_statuses} of them Messages API statuses), "
            f"{self.http_attempts} HTTP attempts "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.answers.items()))}); "
            f"{self.acknowledged} acknowledged, {self.not_acknowledged} never acknowledged, {len(self.lost)} lost",
            f"  messages: {len(self.wrong_status)} with a status other than the contract's",
            f"  hostile sender: {', '.join(f'{k} {v}' for k, v in sorted(self.hostile.items())) or 'none'}",
            f"  events: {self.expected_events} expected; delivered {self.delivered_events}; "
            f"duplicate calls {self.duplicate_calls} (of which by a job whose worker died: "
            f"{self.abandoned_calls}); missing {self._count(self.missing_events)}; "
            f"unexpected {self._count(self.unexpected_events)}",
            f"  failed jobs {self.failed_jobs}; bad signatures {self.bad_signatures}; "
            f"unplanned exits {self.unplanned_exits}; drained in {self.drain_seconds:.1f} s after the load",
            "  recovery (longest, then each): " + "; ".join(
                f"{k} {max(v):.1f} s ({', '.join(f'{x:.1f}' for x in v)})" for k, v in self.recovery.items()),
            "  of which until the probe receipt was acknowledged: " + "; ".join(
                f"{k} {max(v):.1f} s" for k, v in self.acknowledged_after.items()),
            "  refused meanwhile (503 / connection refused / timed out): " + "; ".join(
                f"{k} {v}" for k, v in self.during.items()),
        ]
        if self.slow_kills:
            lines.append(f"  worker kills whose batches took over {SLOW_KILL} s (killed at, took): "
                         + ", ".join(f"{at:.0f} s in, {took:.1f} s" for at, took in self.slow_kills)
                         + "; faults ended at: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.fault_ends.items()))
        if self.waits:
            lines.append(f"  waited for the group to heal before each fault: {self.waits} s")
        for skipped in self.skipped:
            lines.append(f"  fault not injected: {skipped}")
        for name, items in (("lost", self.lost), ("wrong status", self.wrong_status), ("not drained", self.leftovers)):
            if items:
                lines.append(f"  {name}: {items[:10]}")
        for name, found in (("missing", self.missing_events), ("unexpected", self.unexpected_events)):
            for handler, ids in found.items():
                if ids:
                    lines.append(f"  {name} for {handler}: {ids[:10]}")
        return "\n".join(lines)

    @staticmethod
    def _count(found: dict[str, list[str]]) -> dict[str, int]:
        return {handler: len(ids) for handler, ids in found.items()}
