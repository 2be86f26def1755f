"""Durations as runbooks write them: 500ms, 90s, 5m, 1h, 2d."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError with a readable message when it is not one."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a duration (use a whole number and ms, s, m, h or d: 90s, 5m, 1h)")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_seconds(seconds: float) -> str:
    """Short human form: 42.1s, 3m05s, 1h02m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp from a report (offset-aware); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


FUTURE_SLACK_S = 60.0  # clocks differ: a detection time this far ahead of ours is still taken


def parse_moment(text: str, now: datetime) -> datetime:
    """When something happened: an ISO 8601 time (UTC when it has no offset) or a duration meaning that long ago
    (12m); ValueError for anything else and for a moment ahead of now."""
    text = text.strip() if isinstance(text, str) else ""
    if _DURATION.match(text):
        moment = now - timedelta(seconds=parse_duration(text))
    else:
        parsed = parse_time(text)
        if parsed is None:
            raise ValueError(f"{text!r} is neither a time (2026-12-02T09:41:00Z) nor a duration ago (12m)")
        moment = parsed
    if (moment - now).total_seconds() > FUTURE_SLACK_S:
        raise ValueError(f"{text!r} is in the future")
    return moment
