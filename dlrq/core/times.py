"""The times a user may write wherever dlrq takes one (`--since`, `--until`, `?since=`): ISO 8601
(UTC unless it says otherwise), epoch seconds, or relative to now (`-1h`, `-7d`)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

RELATIVE = re.compile(r"^-(\d{1,9})([hd])$")
EPOCH = re.compile(r"^\d{1,12}(\.\d*)?$")


def moment(text: str, now: datetime) -> datetime:
    """The UTC time `text` names; ValueError for anything else, out-of-range times included."""
    text = text.strip()
    relative = RELATIVE.match(text)
    try:
        if relative:
            amount, unit = int(relative.group(1)), relative.group(2)
            return now - (timedelta(hours=amount) if unit == "h" else timedelta(days=amount))
        if EPOCH.match(text):
            return datetime.fromtimestamp(float(text), timezone.utc)
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (found if found.tzinfo else found.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"{text[:40]!r} is not a time: ISO 8601, epoch seconds, or relative as -1h or -7d") from exc
