"""New York sessions: NYSE holidays and early closes by rule, against the published
calendars, and the session rules orders follow."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from server.trading.calendar import (
    CONTINUOUS,
    NYSE,
    Phase,
    easter,
    nyse_early_closes,
    nyse_holidays,
)
from server.trading.model import OrderSpec, OrderType, Side, TimeInForce
from server.trading.timing import (
    auction_session,
    gtc_expiry_ms,
    session_refusal,
    window_open,
    working_session,
)
from tests.brokers.paper.helpers import ny


def test_easter() -> None:
    assert [easter(y) for y in (2012, 2019, 2024, 2025, 2038)] == [
        date(2012, 4, 8),
        date(2019, 4, 21),
        date(2024, 3, 31),
        date(2025, 4, 20),
        date(2038, 4, 25),
    ]


# NYSE's published holiday calendars.
PUBLISHED = {
    2012: [
        "01-02",
        "01-16",
        "02-20",
        "04-06",
        "05-28",
        "07-04",
        "09-03",
        "10-29",
        "10-30",
        "11-22",
        "12-25",
    ],
    2021: ["01-01", "01-18", "02-15", "04-02", "05-31", "07-05", "09-06", "11-25", "12-24"],
    2022: ["01-17", "02-21", "04-15", "05-30", "06-20", "07-04", "09-05", "11-24", "12-26"],
    2023: [
        "01-02",
        "01-16",
        "02-20",
        "04-07",
        "05-29",
        "06-19",
        "07-04",
        "09-04",
        "11-23",
        "12-25",
    ],
    2024: [
        "01-01",
        "01-15",
        "02-19",
        "03-29",
        "05-27",
        "06-19",
        "07-04",
        "09-02",
        "11-28",
        "12-25",
    ],
    2025: [
        "01-01",
        "01-09",
        "01-20",
        "02-17",
        "04-18",
        "05-26",
        "06-19",
        "07-04",
        "09-01",
        "11-27",
        "12-25",
    ],
    2026: [
        "01-01",
        "01-19",
        "02-16",
        "04-03",
        "05-25",
        "06-19",
        "07-03",
        "09-07",
        "11-26",
        "12-25",
    ],
}


@pytest.mark.parametrize("year", sorted(PUBLISHED))
def test_holidays_match_the_published_calendar(year: int) -> None:
    expected = {date.fromisoformat(f"{year}-{md}") for md in PUBLISHED[year]}
    assert set(nyse_holidays(year)) == expected


def test_early_closes() -> None:
    assert set(nyse_early_closes(2024)) == {
        date(2024, 7, 3),
        date(2024, 11, 29),
        date(2024, 12, 24),
    }
    # 2021: July 3 is a Saturday, Christmas Eve the observed holiday.
    assert set(nyse_early_closes(2021)) == {date(2021, 11, 26)}
    s = NYSE.session_on(date(2024, 11, 29))
    assert s is not None and s.early_close
    assert s.close_ms == ny(13, 0, day=date(2024, 11, 29))
    assert s.post_close_ms == ny(17, 0, day=date(2024, 11, 29))


def test_sessions_follow_new_york_time_through_daylight_saving() -> None:
    winter = NYSE.session_on(date(2024, 1, 10))
    summer = NYSE.session_on(date(2024, 7, 10))
    assert winter is not None and summer is not None
    utc = lambda ms: datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")  # noqa: E731
    assert (utc(winter.open_ms), utc(winter.close_ms)) == ("14:30", "21:00")
    assert (utc(summer.open_ms), utc(summer.close_ms)) == ("13:30", "20:00")
    assert (utc(summer.pre_open_ms), utc(summer.post_close_ms)) == ("08:00", "00:00")
    assert NYSE.session_on(date(2024, 1, 13)) is None  # a Saturday
    assert NYSE.session_on(date(2024, 7, 4)) is None


def test_phases_and_next_session() -> None:
    day = date(2024, 3, 28)  # Thursday before Good Friday
    s = NYSE.next_session(ny(12, 0, day=day))
    assert s.day == day
    assert s.phase(ny(3, 59, day=day)) is Phase.CLOSED
    assert s.phase(ny(4, 0, day=day)) is Phase.PRE_MARKET
    assert s.phase(ny(9, 30, day=day)) is Phase.REGULAR
    assert s.phase(ny(16, 0, day=day)) is Phase.POST_MARKET
    assert s.phase(ny(20, 0, day=day)) is Phase.CLOSED
    # After the post-market: the next session skips Good Friday and the weekend.
    assert NYSE.next_session(ny(20, 0, day=day)).day == date(2024, 4, 1)


def test_the_continuous_calendar_never_closes() -> None:
    s = CONTINUOUS.next_session(ny(3, 0, day=date(2024, 1, 13)))
    assert s.day == date(2024, 1, 13)
    assert s.phase(ny(3, 0, day=date(2024, 1, 13))) is Phase.REGULAR
    assert s.close_ms == ny(0, 0, day=date(2024, 1, 14))


def spec(tif: TimeInForce, extended: bool = False, type_: OrderType = OrderType.LIMIT) -> OrderSpec:
    return OrderSpec(
        "AMZN",
        Side.BUY,
        type_,
        tif,
        qty=Decimal(1),
        limit_price=Decimal(100) if type_ is OrderType.LIMIT else None,
        extended_hours=extended,
    )


DAY = date(2024, 3, 13)  # a Wednesday


@pytest.mark.parametrize(
    ("tif", "at", "refused"),
    [
        (TimeInForce.IOC, ny(10, 0, day=DAY), False),
        (TimeInForce.IOC, ny(8, 0, day=DAY), True),
        (TimeInForce.FOK, ny(16, 0, day=DAY), True),
        (TimeInForce.IOC, ny(12, 0, day=date(2024, 3, 16)), True),  # Saturday
        (TimeInForce.OPG, ny(9, 27, day=DAY), False),
        (TimeInForce.OPG, ny(9, 28, day=DAY), True),
        (TimeInForce.OPG, ny(15, 59, day=DAY), True),
        (TimeInForce.OPG, ny(16, 0, day=DAY), False),  # for tomorrow's open
        (TimeInForce.CLS, ny(15, 49, day=DAY), False),
        (TimeInForce.CLS, ny(15, 50, day=DAY), True),
        (TimeInForce.CLS, ny(16, 0, day=DAY), False),  # for tomorrow's close
        (TimeInForce.DAY, ny(2, 0, day=DAY), False),  # held for the open
        (TimeInForce.GTC, ny(12, 0, day=date(2024, 3, 16)), False),
    ],
)
def test_session_refusals(tif: TimeInForce, at: int, refused: bool) -> None:
    assert (session_refusal(spec(tif), NYSE, at) is not None) == refused


def test_working_and_auction_sessions() -> None:
    assert working_session(spec(TimeInForce.DAY), NYSE, ny(17, 0, day=DAY)).day == date(2024, 3, 14)
    ext = spec(TimeInForce.DAY, extended=True)
    s = working_session(ext, NYSE, ny(17, 0, day=DAY))
    assert s.day == DAY and window_open(ext, s, ny(17, 0, day=DAY))
    assert not window_open(spec(TimeInForce.DAY), s, ny(17, 0, day=DAY))
    assert auction_session(spec(TimeInForce.OPG), NYSE, ny(8, 0, day=DAY)).day == DAY
    assert auction_session(spec(TimeInForce.OPG), NYSE, ny(16, 0, day=DAY)).day == date(2024, 3, 14)
    assert auction_session(spec(TimeInForce.CLS), NYSE, ny(12, 0, day=DAY)).day == DAY
    assert auction_session(spec(TimeInForce.CLS), NYSE, ny(16, 1, day=DAY)).day == date(2024, 3, 14)
    # 90 days after 2024-03-13 is Tuesday 2024-06-11: expires at its close.
    assert gtc_expiry_ms(NYSE, ny(10, 0, day=DAY), 90) == ny(16, 0, day=date(2024, 6, 11))
