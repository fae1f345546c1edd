"""Which US trading day an exchange timestamp belongs to (America/New_York dates).

Converting every tick through zoneinfo would cost more than the rest of the hot path,
so callers keep the current ``DayWindow`` and only ask again when a timestamp falls
outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True, slots=True)
class DayWindow:
    day: date
    start_ms: int  # inclusive, New York midnight
    end_ms: int  # exclusive, the next New York midnight (23, 24 or 25 hours later)

    def contains(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms


def _midnight_ms(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=NEW_YORK).timestamp() * 1000)


def day_window(t_ms: int) -> DayWindow:
    day = datetime.fromtimestamp(t_ms / 1000, tz=UTC).astimezone(NEW_YORK).date()
    return DayWindow(day, _midnight_ms(day), _midnight_ms(day + timedelta(days=1)))
