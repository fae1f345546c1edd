"""When an order may work: the session rules the risk checks and the paper broker share.

- An order works in the regular session (09:30-16:00 New York), or from 04:00 to 20:00
  with ``extended_hours``.
- Submitted while its window is closed (at night, on a weekend or holiday), a DAY or
  GTC order is accepted and held for its next window, as Alpaca does; a DAY order then
  expires at the end of that window.
- IOC and FOK need their window open now: there is nothing to fill against otherwise.
- OPG joins the next opening auction; it is refused from 2 minutes before the open
  until the close (Alpaca's 09:28 cutoff). CLS joins the next closing auction; it is
  refused in the last 10 minutes of the session (Alpaca's 15:50 cutoff).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from server.trading.calendar import Calendar, Session
from server.trading.model import OrderSpec, TimeInForce

OPG_CUTOFF_MS: Final = 2 * 60_000
CLS_CUTOFF_MS: Final = 10 * 60_000


def working_session(spec: OrderSpec, calendar: Calendar, now_ms: int) -> Session:
    """The session the order will (first) work in: the current one if its window has
    not ended yet, else the next."""
    session = calendar.next_session(now_ms)
    _, end = session.window(spec.extended_hours)
    if now_ms >= end:
        after = calendar.next_session(session.post_close_ms)
        return after
    return session


def window_open(spec: OrderSpec, session: Session, now_ms: int) -> bool:
    start, end = session.window(spec.extended_hours)
    return start <= now_ms < end


def session_refusal(spec: OrderSpec, calendar: Calendar, now_ms: int) -> str | None:
    """Why the order cannot be taken now (a sentence), or ``None``."""
    tif = spec.time_in_force
    if tif in (TimeInForce.IOC, TimeInForce.FOK):
        session = calendar.next_session(now_ms)
        if not window_open(spec, session, now_ms):
            return f"an {tif} order needs the market open; it opens at {session.open_ms}"
        return None
    if tif is TimeInForce.OPG:
        session = calendar.next_session(now_ms)
        if session.open_ms - OPG_CUTOFF_MS <= now_ms < session.close_ms:
            return "opening auction orders are taken until 2 minutes before the open"
    if tif is TimeInForce.CLS:
        session = calendar.next_session(now_ms)
        if session.close_ms - CLS_CUTOFF_MS <= now_ms < session.close_ms:
            return "closing auction orders are taken until 10 minutes before the close"
    return None


def auction_session(spec: OrderSpec, calendar: Calendar, now_ms: int) -> Session:
    """The session whose opening (OPG) or closing (CLS) auction the order joins."""
    session = calendar.next_session(now_ms)
    if spec.time_in_force is TimeInForce.OPG and now_ms >= session.open_ms:
        return calendar.next_session(session.post_close_ms)
    if spec.time_in_force is TimeInForce.CLS and now_ms >= session.close_ms:
        return calendar.next_session(session.post_close_ms)
    return session


def gtc_expiry_ms(calendar: Calendar, created_ms: int, max_age_days: int) -> int:
    """When a GTC order created at ``created_ms`` expires: the close of the first
    session at least ``max_age_days`` calendar days later."""
    later = created_ms + int(timedelta(days=max_age_days).total_seconds() * 1000)
    return calendar.next_session(later).close_ms
