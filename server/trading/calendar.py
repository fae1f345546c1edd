"""When US equities trade: New York sessions, holidays and early closes.

A ``Session`` is one trading day: pre-market from 04:00, the regular session 09:30 to
16:00, post-market to 20:00, New York time (``server.market.trading_day.NEW_YORK``, so
daylight saving is handled by zoneinfo). On early-close days the regular session ends
at 13:00 and the post-market at 17:00.

Holidays are computed from NYSE's rules rather than listed, so every year works:
New Year's Day (a Saturday one is not observed on the Friday before, the exchange's
rule), Martin Luther King Jr. Day (third Monday of January, from 1998), Washington's
Birthday (third Monday of February), Good Friday, Memorial Day (last Monday of May),
Juneteenth (from 2022), Independence Day, Labor Day, Thanksgiving (fourth Thursday of
November) and Christmas; a Saturday holiday is observed on the Friday before, a
Sunday one on the Monday after. Early closes (13:00): the day before Independence Day
when it falls Monday to Thursday, the day after Thanksgiving, and Christmas Eve Monday
to Thursday. Unscheduled closures (national days of mourning, 9/11, Hurricane Sandy)
are in ``SPECIAL_CLOSURES``; one announced in the future needs a line there. The rules
are right from 2000 on; earlier years had closures this does not know.

``ContinuousCalendar`` is for markets that never close (the simulated market): every
New York calendar day is one session, regular and extended alike from midnight to
midnight, so DAY orders expire at midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Final, Protocol

from server.market.trading_day import NEW_YORK, day_window

PRE_OPEN: Final = time(4, 0)
OPEN: Final = time(9, 30)
CLOSE: Final = time(16, 0)
EARLY_CLOSE: Final = time(13, 0)
POST_CLOSE: Final = time(20, 0)
EARLY_POST_CLOSE: Final = time(17, 0)

SPECIAL_CLOSURES: Final[dict[date, str]] = {
    date(2001, 9, 11): "September 11 attacks",
    date(2001, 9, 12): "September 11 attacks",
    date(2001, 9, 13): "September 11 attacks",
    date(2001, 9, 14): "September 11 attacks",
    date(2004, 6, 11): "National Day of Mourning (Ronald Reagan)",
    date(2007, 1, 2): "National Day of Mourning (Gerald Ford)",
    date(2012, 10, 29): "Hurricane Sandy",
    date(2012, 10, 30): "Hurricane Sandy",
    date(2018, 12, 5): "National Day of Mourning (George H. W. Bush)",
    date(2025, 1, 9): "National Day of Mourning (Jimmy Carter)",
}


class Phase(StrEnum):
    CLOSED = "closed"
    PRE_MARKET = "pre_market"
    REGULAR = "regular"
    POST_MARKET = "post_market"


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day; times are epoch ms. Regular: [open, close); extended:
    [pre_open, post_close)."""

    day: date
    pre_open_ms: int
    open_ms: int
    close_ms: int
    post_close_ms: int
    early_close: bool = False

    def phase(self, t_ms: int) -> Phase:
        if t_ms < self.pre_open_ms or t_ms >= self.post_close_ms:
            return Phase.CLOSED
        if t_ms < self.open_ms:
            return Phase.PRE_MARKET
        if t_ms < self.close_ms:
            return Phase.REGULAR
        return Phase.POST_MARKET

    def window(self, extended: bool) -> tuple[int, int]:
        """When an order works in this session: [start, end) in ms."""
        if extended:
            return self.pre_open_ms, self.post_close_ms
        return self.open_ms, self.close_ms


class Calendar(Protocol):
    def session_on(self, day: date) -> Session | None:
        """The session of New York date ``day``, or ``None`` if the market is closed."""
        ...

    def next_session(self, t_ms: int) -> Session:
        """The session in progress at ``t_ms`` (before its post-market close), else the
        next one."""
        ...


def _ms(day: date, at: time) -> int:
    return int(datetime.combine(day, at, tzinfo=NEW_YORK).timestamp() * 1000)


def easter(year: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The ``n``-th ``weekday`` (0 = Monday) of the month; ``n = -1``: the last."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=64)
def nyse_holidays(year: int) -> dict[date, str]:
    """Full-day closures of ``year`` (observed dates), special closures included."""
    out: dict[date, str] = {}
    new_year = date(year, 1, 1)
    if new_year.weekday() != 5:  # a Saturday New Year's Day is not observed
        out[_observed(new_year)] = "New Year's Day"
    if year >= 1998:
        out[_nth_weekday(year, 1, 0, 3)] = "Martin Luther King Jr. Day"
    out[_nth_weekday(year, 2, 0, 3)] = "Washington's Birthday"
    out[easter(year) - timedelta(days=2)] = "Good Friday"
    out[_nth_weekday(year, 5, 0, -1)] = "Memorial Day"
    if year >= 2022:
        out[_observed(date(year, 6, 19))] = "Juneteenth"
    out[_observed(date(year, 7, 4))] = "Independence Day"
    out[_nth_weekday(year, 9, 0, 1)] = "Labor Day"
    out[_nth_weekday(year, 11, 3, 4)] = "Thanksgiving Day"
    out[_observed(date(year, 12, 25))] = "Christmas Day"
    out.update({d: why for d, why in SPECIAL_CLOSURES.items() if d.year == year})
    return out


@lru_cache(maxsize=64)
def nyse_early_closes(year: int) -> dict[date, str]:
    """Days of ``year`` whose regular session ends at 13:00."""
    out: dict[date, str] = {}
    july3 = date(year, 7, 3)
    if july3.weekday() <= 3:
        out[july3] = "Independence Day eve"
    out[_nth_weekday(year, 11, 3, 4) + timedelta(days=1)] = "Day after Thanksgiving"
    eve = date(year, 12, 24)
    if eve.weekday() <= 3:
        out[eve] = "Christmas Eve"
    return out


def _ny_date(t_ms: int) -> date:
    return day_window(t_ms).day


class NyseCalendar:
    """The US equity calendar (see the module docstring)."""

    def session_on(self, day: date) -> Session | None:
        return _nyse_session(day)

    def next_session(self, t_ms: int) -> Session:
        day = _ny_date(t_ms)
        for _ in range(15):  # the longest closure on record is 4 weekdays
            session = _nyse_session(day)
            if session is not None and session.post_close_ms > t_ms:
                return session
            day += timedelta(days=1)
        raise RuntimeError(f"no session within 15 days of {t_ms}")  # pragma: no cover


@lru_cache(maxsize=1024)
def _nyse_session(day: date) -> Session | None:
    if day.weekday() >= 5 or day in nyse_holidays(day.year):
        return None
    early = day in nyse_early_closes(day.year)
    return Session(
        day=day,
        pre_open_ms=_ms(day, PRE_OPEN),
        open_ms=_ms(day, OPEN),
        close_ms=_ms(day, EARLY_CLOSE if early else CLOSE),
        post_close_ms=_ms(day, EARLY_POST_CLOSE if early else POST_CLOSE),
        early_close=early,
    )


class ContinuousCalendar:
    """A market that never closes: one session per New York calendar day."""

    def session_on(self, day: date) -> Session | None:
        return _continuous_session(day)

    def next_session(self, t_ms: int) -> Session:
        return _continuous_session(_ny_date(t_ms))


@lru_cache(maxsize=1024)
def _continuous_session(day: date) -> Session:
    start = _ms(day, time(0))
    end = _ms(day + timedelta(days=1), time(0))
    return Session(day, start, start, end, end)


#: The default calendar.
NYSE: Final = NyseCalendar()
CONTINUOUS: Final = ContinuousCalendar()
