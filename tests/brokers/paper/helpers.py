"""Time and market-event builders for the paper broker tests."""

from __future__ import annotations

from datetime import date, datetime, time

from server.market.trading_day import NEW_YORK

#: A regular Wednesday (EDT).
DAY = date(2024, 3, 13)


def ny(hour: int, minute: int = 0, second: int = 0, ms: int = 0, day: date = DAY) -> int:
    """Epoch ms of a New York wall-clock time."""
    at = datetime.combine(day, time(hour, minute, second), tzinfo=NEW_YORK)
    return int(at.timestamp() * 1000) + ms
