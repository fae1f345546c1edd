"""Is a decoded event plausible? Its time against the feed's clock and the receive time,
its price against the symbol's reference. Pure: no I/O, no clock of its own.

``polygon_protocol.check_event`` has already checked every field on its own (finite,
within bounds). What a single event cannot show is whether it fits the stream: a print
stamped 2100-01-01, or one at 10,000 in a stock trading at 100. Such an event is
rejected (and counted), and, what matters most, it can never move what other events
are judged by: the feed clock, or a symbol's reference price.

The feed clock
    ``FeedClock`` is the *second highest* event time accepted in the session, so one
    event, however far ahead, cannot move it: it takes two. Bars of quiet symbols are
    closed by this clock (``server.analytics``), so one bad print cannot close another
    symbol's bars or its day.

Live sources (the real Polygon feed, the simulated market)
    The receive time is the authority: an event is accepted when its time is at most
    ``live_ahead_ms`` after the time we received it (clock skew) and at most
    ``late_ms`` before it (the 15-minute delayed feed, late reports).

Replays (anything not known to be live: a recording, a local fake)
    Recorded times are in the past, so the receive time only bounds them from above
    (nothing may be more than ``ahead_ms`` in the future). They are judged against the
    feed clock: an event up to ``ahead_ms`` ahead of it or ``late_ms`` behind it is
    accepted. One further ahead is *held* (not applied yet) until ``confirm`` events
    agree on the new time (within ``ahead_ms`` of each other): then the held events are
    released in arrival order (a real jump: a quiet spell, the next day of a recording,
    a looped replay). If instead ``expire_after`` events are accepted on the old clock
    meanwhile, the held ones are rejected. At the start of a session there is no clock
    yet, so the first events wait for a second one that agrees.

The price band
    A trade is accepted when its price is within ``[ref / (1 + band), ref * (1 + band)]``
    of the symbol's reference: the last accepted trade, or before any, the mid of the
    last two-sided quote. A trade outside it is held until the symbol's next events
    decide: a quote whose mid (or ``price_confirm`` trades whose prices) agree with it
    confirms the move and everything held is released; a trade or quote back near the
    reference rejects it. A quote side outside the band is rejected unless it confirms
    held trades. With no reference at all, a symbol's first trade waits for the next
    trade or two-sided quote. ``band = 0`` turns the band off.

Held events are few (bounded by ``max_held``; beyond it the oldest is rejected) and
cost the hot path nothing while there are none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from streams.events import Quote, Received, Trade
from streams.polygon_protocol import Reject, RejectReason


@dataclass(frozen=True, slots=True)
class ScreenPolicy:
    """Tolerances (documented in docs/market-data.md, set by ``TICKGRAPH_*`` settings)."""

    #: The source is known to be live: judge times against the receive time.
    live: bool = False
    #: Live: how far an event may be ahead of its receive time (clock skew).
    live_ahead_ms: int = 5_000
    #: Replay: how far ahead of the feed clock an event is accepted without confirmation
    #: (and the most a replayed event may be ahead of the receive time).
    ahead_ms: int = 60_000
    #: How far behind the feed clock (replay) or the receive time (live) an event may be.
    late_ms: int = 3_600_000
    #: Relative price band around the reference (0.5: from ref/1.5 to ref*1.5); 0: off.
    band: float = 0.5
    #: Events that must agree before the clock jumps (held events count).
    confirm: int = 2
    #: Trades that must agree before the reference price jumps (held ones count).
    price_confirm: int = 3
    #: Events accepted on the old clock before held (ahead) events are rejected.
    expire_after: int = 2
    max_held: int = 64

    def __post_init__(self) -> None:
        if min(self.live_ahead_ms, self.ahead_ms, self.late_ms) < 0 or not self.band >= 0:
            raise ValueError("tolerances and the band must not be negative")
        if self.confirm < 2 or self.price_confirm < 2 or self.expire_after < 1:
            raise ValueError("confirm and price_confirm must be >= 2, expire_after >= 1")


class FeedClock:
    """The session's event time, robust to one outlier: the second highest time noted.

    ``recv_ms`` is when the event that last advanced it was received, so a caller can
    extrapolate in wall time (``now_ms``) while the feed is quiet.
    """

    __slots__ = ("_top1", "_top2", "recv_ms")

    def __init__(self) -> None:
        self._top1 = 0
        self._top2 = 0
        self.recv_ms = 0

    def reset(self) -> None:
        self._top1 = self._top2 = self.recv_ms = 0

    def note(self, t_ms: int, recv_ms: int) -> None:
        if t_ms > self._top2:
            if t_ms > self._top1:
                self._top2 = self._top1
                self._top1 = t_ms
            else:
                self._top2 = t_ms
            self.recv_ms = recv_ms

    @property
    def time_ms(self) -> int:
        """0 until two events were noted."""
        return self._top2

    def now_ms(self, wall_ms: int) -> int:
        """The clock extrapolated by the wall time elapsed since it last moved."""
        top2 = self._top2
        if not top2:
            return 0
        return top2 + max(0, wall_ms - self.recv_ms)


#: ``FeedScreen.admit``'s verdict for an event that waits for confirmation.
HELD: Final = Reject(RejectReason.TIMESTAMP_UNCONFIRMED, "held")


@dataclass(slots=True)
class _Symbol:
    ref: float = 0.0  # last accepted trade price (0: none yet)
    lo: float = 0.0
    hi: float = 0.0
    bid: float = 0.0  # last two-sided quote
    ask: float = 0.0

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0

    held: list[Received] = field(default_factory=list)


def _time_of(item: Received) -> int:
    ev = item.event
    return ev.t if type(ev) is Trade or type(ev) is Quote else ev.s  # type: ignore[union-attr]


class FeedScreen(FeedClock):
    """Judges decoded events; one per feed (``new_session`` per upstream connection).

    It is the feed clock too (a ``FeedClock``: it notes every event it accepts), so the
    hot path reads and moves the clock without going through another object.

    ``admit(item)`` returns ``None`` (apply it), ``HELD`` (it waits) or a ``Reject``.
    Afterwards ``released`` holds earlier events now confirmed, to apply *before* the
    admitted one, and ``dropped`` the rejects of earlier held events: the caller
    empties both lists.
    """

    def __init__(self, policy: ScreenPolicy | None = None) -> None:
        super().__init__()
        self.policy = policy or ScreenPolicy()
        self.released: list[Received] = []
        self.dropped: list[Reject] = []
        #: Events held now (waiting for confirmation), for monitoring.
        self.holding = 0
        self._held: list[Received] = []  # held by the clock (replays)
        self._held_age = 0  # events accepted on the old clock since the first was held
        self._symbols: dict[str, _Symbol] = {}
        p = self.policy
        self._live = p.live
        self._ahead = p.live_ahead_ms if p.live else p.ahead_ms
        self._late = p.late_ms
        self._band = 1.0 + p.band if p.band > 0 else 0.0

    def new_session(self) -> None:
        """A new upstream connection: the clock starts over (a replay may restart),
        events still held from the old session are dropped. References are kept."""
        self.reset()
        self._drop(self._held, RejectReason.TIMESTAMP_UNCONFIRMED, "session ended")
        self._held_age = 0
        for st in self._symbols.values():
            self._drop(st.held, RejectReason.PRICE_UNCONFIRMED, "session ended")

    def seed_reference(self, symbol: str, price: float) -> None:
        """A reference from elsewhere (the last stored close at start-up)."""
        if price > 0.0:
            self._set_ref(self._symbol(symbol), price)

    def reference(self, symbol: str) -> float | None:
        st = self._symbols.get(symbol)
        return st.ref if st is not None and st.ref > 0.0 else None

    # -- the hot path -------------------------------------------------------------------

    @property
    def clock(self) -> FeedClock:
        """The feed clock: this screen itself."""
        return self

    def admit(self, item: Received, recv_ms: int) -> Reject | None:
        """Judge ``item``, received at ``recv_ms`` (the frame's receive time, in ms).

        The common case (a time on the clock, a price in its band, nothing held) is
        decided here in a few comparisons; anything else goes to ``_admit``."""
        ev = item.event
        kind = type(ev)
        t: int = ev.t if kind is Trade or kind is Quote else ev.s  # type: ignore[union-attr]
        if t > recv_ms + self._ahead or self._held:
            return self._admit(item, t, recv_ms)
        top2 = self._top2  # 0 until two events were accepted: no clock yet
        if self._live:
            if t < recv_ms - self._late:
                return self._admit(item, t, recv_ms)
        elif not (top2 and top2 - self._late <= t <= top2 + self._ahead):
            return self._admit(item, t, recv_ms)
        if self._band:
            st = self._symbols.get(ev.sym)
            if st is None or st.held:
                return self._admit(item, t, recv_ms)
            if kind is Trade:
                p: float = ev.p  # type: ignore[union-attr]
                if not st.lo <= p <= st.hi:
                    return self._admit(item, t, recv_ms)
                if p != st.ref:
                    band = self._band
                    st.ref = p
                    st.lo = p / band
                    st.hi = p * band
            elif kind is Quote:
                if st.ref <= 0.0:
                    return self._admit(item, t, recv_ms)  # the book is the reference yet
                bp: float = ev.bp  # type: ignore[union-attr]
                ap: float = ev.ap  # type: ignore[union-attr]
                lo = st.lo
                hi = st.hi
                if (bp > 0.0 and not lo <= bp <= hi) or (ap > 0.0 and not lo <= ap <= hi):
                    return self._admit(item, t, recv_ms)
        # FeedClock.note, inlined: accepted.
        if t > top2:
            top1 = self._top1
            if t > top1:
                self._top2 = top1
                self._top1 = t
            else:
                self._top2 = t
            self.recv_ms = recv_ms
        return None

    def _admit(self, item: Received, t: int, recv_ms: int) -> Reject | None:
        """Everything ``admit`` does not decide on its fast path."""
        ev = item.event
        if t > recv_ms + self._ahead:
            return Reject(RejectReason.TIMESTAMP_AHEAD, f"{ev.sym} t={t} received {recv_ms}")
        if self._live:
            if t < recv_ms - self._late:
                return Reject(RejectReason.TIMESTAMP_STALE, f"{ev.sym} t={t}")
        else:
            verdict = self._on_clock(item, t)
            if verdict is not None:
                return verdict
        self.note(t, recv_ms)
        if self._held:
            self._age_held()
        return self._on_price(item) if self._band else None

    # -- time ---------------------------------------------------------------------------

    def _on_clock(self, item: Received, t: int) -> Reject | None:
        c = self._top2
        if c:
            if t < c - self._late:
                return Reject(RejectReason.TIMESTAMP_STALE, f"{item.event.sym} t={t} clock {c}")
            if t <= c + self._ahead:
                return None
        return self._hold_time(item, t)

    def _hold_time(self, item: Received, t: int) -> Reject | None:
        held = self._held
        ahead = self._ahead
        agreeing = [h for h in held if abs(_time_of(h) - t) <= ahead]
        if len(agreeing) + 1 < self.policy.confirm:
            if not held:
                self._held_age = 0
            held.append(item)
            self.holding += 1
            if len(held) > self.policy.max_held:
                self._drop([held.pop(0)], RejectReason.TIMESTAMP_UNCONFIRMED, "too many held")
            return HELD
        # Confirmed: the clock jumps to the agreeing events; they go first.
        rest = [h for h in held if not any(h is a for a in agreeing)]
        held.clear()
        self.holding -= len(agreeing)
        for h in agreeing:
            self._accept_held(h)
        # Events held for another time are judged again against the new clock.
        self.holding -= len(rest)
        for h in rest:
            verdict = self._on_clock(h, _time_of(h))
            if verdict is None:
                self._accept_held(h)
            elif verdict is not HELD:
                self.dropped.append(verdict)
        return None

    def _accept_held(self, h: Received) -> None:
        self.note(_time_of(h), h.received_ns // 1_000_000)
        self._release(h)

    def _age_held(self) -> None:
        self._held_age += 1
        if self._held_age > self.policy.expire_after:
            held = list(self._held)
            self._held.clear()
            self.holding -= len(held)
            self._drop(held, RejectReason.TIMESTAMP_UNCONFIRMED, "the feed went on without it")

    def _release(self, item: Received) -> None:
        """A held event is confirmed on the clock: it still faces the price band."""
        verdict = self._on_price(item) if self._band else None
        if verdict is None:
            self.released.append(item)
        elif verdict is not HELD:
            self.dropped.append(verdict)

    def _drop(self, items: list[Received], reason: RejectReason, why: str) -> None:
        for h in items:
            self.dropped.append(Reject(reason, f"{h.event.sym} t={_time_of(h)}: {why}"))
        items.clear()

    # -- price --------------------------------------------------------------------------

    def _symbol(self, symbol: str) -> _Symbol:
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbols[symbol] = _Symbol()
        return st

    def _set_ref(self, st: _Symbol, price: float) -> None:
        st.ref = price
        st.lo = price / self._band if self._band else 0.0
        st.hi = price * self._band if self._band else float("inf")

    def _on_price(self, item: Received) -> Reject | None:
        ev = item.event
        kind = type(ev)
        if kind is Trade:
            st = self._symbols.get(ev.sym)
            if st is None:
                st = self._symbol(ev.sym)
            p: float = ev.p  # type: ignore[union-attr]
            if st.lo <= p <= st.hi and not st.held:
                st.ref = p
                st.lo = p / self._band
                st.hi = p * self._band
                return None
            return self._judge_trade(st, item, p)
        if kind is Quote:
            return self._judge_quote(item, ev)  # type: ignore[arg-type]
        return None  # aggregates are only compared with our bars, never applied

    def _near(self, a: float, b: float) -> bool:
        return b / self._band <= a <= b * self._band

    def _judge_trade(self, st: _Symbol, item: Received, p: float) -> Reject | None:
        if st.ref > 0.0 and st.lo <= p <= st.hi:
            # Back near the reference: what was held is contradicted.
            self._drop_symbol(st, RejectReason.PRICE_OUT_OF_BAND, "contradicted by later trades")
            self._set_ref(st, p)
            return None
        anchor = st.ref if st.ref > 0.0 else st.mid
        if anchor > 0.0 and self._near(p, anchor):
            # No trade yet, but the quote agrees: a first trade that needs no wait.
            self._drop_symbol(st, RejectReason.PRICE_OUT_OF_BAND, "contradicted by later trades")
            self._set_ref(st, p)
            return None
        agreeing = [h for h in st.held if self._near(h.event.p, p)]  # type: ignore[union-attr]
        needed = self.policy.price_confirm if st.ref > 0.0 else 2
        if len(agreeing) + 1 >= needed:
            self._confirm(st, agreeing, p)
            return None
        st.held.append(item)
        self.holding += 1
        if len(st.held) > self.policy.max_held:
            self.holding -= 1
            self._drop([st.held.pop(0)], RejectReason.PRICE_UNCONFIRMED, "too many held")
        return HELD

    def _judge_quote(self, item: Received, q: Quote) -> Reject | None:
        st = self._symbols.get(q.sym)
        if st is None:
            st = self._symbol(q.sym)
        bp, ap = q.bp, q.ap
        mid = (bp + ap) / 2.0 if bp > 0.0 and ap > 0.0 else 0.0
        if st.held and mid > 0.0:
            agreeing = [h for h in st.held if self._near(h.event.p, mid)]  # type: ignore[union-attr]
            if agreeing:
                # The book moved with the held trades: the move is real.
                self._confirm(st, agreeing, agreeing[-1].event.p)  # type: ignore[union-attr]
            elif st.ref > 0.0 and self._near(mid, st.ref):
                self._drop_symbol(st, RejectReason.PRICE_OUT_OF_BAND, "contradicted by the book")
            else:
                self._drop_symbol(st, RejectReason.PRICE_UNCONFIRMED, "the book disagrees")
        if st.ref > 0.0:
            lo, hi = st.lo, st.hi
            if (bp > 0.0 and not lo <= bp <= hi) or (ap > 0.0 and not lo <= ap <= hi):
                return Reject(
                    RejectReason.PRICE_OUT_OF_BAND,
                    f"quote {q.sym} {bp} x {ap} against reference {st.ref}",
                )
        if mid > 0.0:
            st.bid, st.ask = bp, ap
        return None

    def _confirm(self, st: _Symbol, agreeing: list[Received], price: float) -> None:
        rest = [h for h in st.held if not any(h is a for a in agreeing)]
        st.held.clear()
        self.holding -= len(agreeing)
        self.released.extend(agreeing)
        self._set_ref(st, price)
        self._drop(rest, RejectReason.PRICE_OUT_OF_BAND, "the price went elsewhere")
        self.holding -= len(rest)

    def _drop_symbol(self, st: _Symbol, reason: RejectReason, why: str) -> None:
        if st.held:
            self.holding -= len(st.held)
            self._drop(st.held, reason, why)


__all__ = ["HELD", "FeedClock", "FeedScreen", "ScreenPolicy"]
