"""Numbers, times and phone numbers as people read them: the console's Jinja filters."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from markupsafe import Markup

from dlrq.core.errcodes import meaning


def number(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def seconds(value: float | None) -> str:
    """1.5 s, 45 s, 12 min, 3.2 h."""
    if value is None:
        return "–"
    if value < 10:
        return f"{value:.1f} s"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def moment(value: Any) -> str:
    """An ISO 8601 text, a datetime or epoch seconds, in UTC to the second."""
    if value in (None, ""):
        return "–"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def masker(show_numbers: bool):  # noqa: ANN201
    def mask(value: Any) -> Any:
        """Phone numbers show their last two digits only, unless DLRQ_LOG_PHONE_NUMBERS is true."""
        if show_numbers or not isinstance(value, str) or not value:
            return value
        return "•" * max(0, len(value) - 2) + value[-2:]

    return mask


def err_code(code: Any) -> Markup:
    """An err-code with its meaning from Vonage's table, as an abbreviation a reader can hover."""
    if code in (None, ""):
        return Markup("–")
    if str(code) == "0":
        return Markup("0")  # no error
    said = meaning(str(code))
    return Markup('<abbr title="{0}">{1}</abbr> <span class="muted">{0}</span>').format(said, code)


def sparkline(values: list[float | None], width: int = 120, height: int = 24) -> Markup:
    """An inline SVG of a rate between 0 and 1, hour by hour; gaps where nothing was final."""
    known = [v for v in values if v is not None]
    if not known:
        return Markup('<span class="muted">no outcome</span>')
    step = width / max(1, len(values) - 1)
    segments, current = [], []
    for i, value in enumerate(values):
        if value is None:
            if current:
                segments.append(current)
            current = []
            continue
        current.append(f"{i * step:.1f},{height - 2 - value * (height - 4):.1f}")
    if current:
        segments.append(current)
    lines = "".join(f'<polyline points="{" ".join(points)}"/>' if len(points) > 1
                    else f'<circle cx="{points[0].split(",")[0]}" cy="{points[0].split(",")[1]}" r="2"/>'
                    for points in segments)
    low, high = min(known), max(known)
    label = f"delivery rate hour by hour over 24 hours, from {low:.0%} to {high:.0%}"
    return Markup(f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
                  f'role="img" aria-label="{label}"><title>{label}</title>{lines}</svg>')


FILTERS = {"number": number, "percent": percent, "seconds": seconds, "moment": moment, "err_code": err_code,
           "sparkline": sparkline}
