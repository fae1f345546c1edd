"""The alert engine: evaluates armed alerts on every market event, indexed so that an
event costs nothing for alerts that are nowhere near firing.

Semantics are those of ``server.alerts.conditions`` (the contract). This module is
about doing it cheaply; ``server.alerts.naive.NaiveEngine`` does the same by looping
over every alert and the tests check that both fire exactly the same.

How the work is bounded
    *Streams.* Per symbol, LAST/BID/ASK/MID and every indicator output some alert
    uses are streams. Each has a ``ThresholdIndex`` of the constant thresholds of
    the conditions on it (comparisons and crossings against a constant, channels with
    constant bounds, and movingUp/Down, whose threshold only changes at bar closes).
    A tick whose value stays strictly between the two thresholds around the previous
    value (the index's bracket) changes no condition: it costs a dict lookup and two
    float comparisons. Otherwise only the entries with a threshold between the old and
    the new value are looked at (bisection), and the bracket is recomputed.

    *Levels are state.* Every level condition keeps its truth, updated only when the
    index (or an observation of a non-constant condition) says it may have changed;
    each alert counts its false levels. An alert made only of levels whose count drops
    to 0 goes on the symbol's *ready heap*, keyed by the earliest time its trigger
    mode lets it fire again (0 for once; the bar end for oncePerBar; the last firing +
    cooldown for everyTime). Each event of the symbol pops only the due entries, so a
    greaterThan + everyTime alert that stays true costs one heap operation per firing,
    not a check per tick; an entry whose alert went false is dropped when it comes due.

    *Edges are events.* An edge condition on a constant fires only from the range
    scan; it is checked together with its alert's other conditions (levels by their
    count, other edges by "fired at this event").

    *The rest* (operand vs operand, channels with an operand bound) is evaluated at
    every update of one of its streams (it has no fixed threshold); indicator streams
    exist only while an alert needs them, so an indicator update touches only the
    alerts on that (symbol, timeframe, key).

    *Bar-close alerts* (oncePerBarClose) read *close streams* instead: per symbol and
    timeframe, the values of their operands at the bar closes, set only by
    ``on_bar_close``. The same index, level counts and pending baselines apply, so a
    bar close costs the thresholds crossed between two closes plus the alerts that
    fire; level-only ones whose levels hold sit in a per-timeframe ready set.

    A new edge condition waits in the stream's *pending* list (and forces the next
    update onto the slow path) until the first update after arming, its baseline,
    then joins the index.

Callers
    The market pipeline feeds ``on_trade``/``on_quote``/``on_indicator(s)``/
    ``on_bar_close``; each returns the ``Fired`` records of that event (ordered by the
    alerts' arming order). The service persists them (unique key per alert) and can
    rebuild firing state with ``FireState.after``/``from_persisted`` for ``restore``.
    Deliver a bar's final indicator values, then ``on_bar_close``, before the trade of
    the next bar. ``required_indicators`` / ``take_requirement_changes`` say which
    indicator streams to compute.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import replace
from enum import StrEnum
from heapq import heappop, heappush
from itertools import islice
from operator import itemgetter
from typing import NamedTuple, TypeAlias

from server.alerts.conditions import (
    Sample,
    clean_output,
    condition_values,
    crossed,
    holds,
    mid_price,
    moving_threshold,
    window_reference,
)
from server.alerts.index import ThresholdIndex
from server.alerts.model import (
    EDGE_OPERATORS,
    MAX_BARS,
    Alert,
    Channel,
    ConditionValues,
    Fired,
    FireState,
    IndicatorKey,
    InvalidAlert,
    Movement,
    Operand,
    Operator,
    OutputResolver,
    PriceSource,
    TriggerMode,
    default_output_index,
)
from server.alerts.validation import validate_alert
from server.errors import LimitExceeded
from server.market.timeframes import Timeframe

#: A resolved operand: a price source or (timeframe, key, output index).
Src: TypeAlias = PriceSource | tuple[Timeframe, str, int]

_INF = math.inf
_NEVER = -(1 << 62)
_FOREVER = 1 << 62

_K_CONST = 0  # one stream vs a constant
_K_CHANNEL = 1  # one stream vs two constant bounds
_K_MOVING = 2  # movingUp/Down: one stream vs a threshold that changes at bar closes
_K_GENERAL = 3  # operand on the right or in a channel bound

_ONCE = TriggerMode.ONCE
_PER_BAR = TriggerMode.ONCE_PER_BAR
_CLOSE = TriggerMode.ONCE_PER_BAR_CLOSE
_EVERY = TriggerMode.EVERY_TIME

_first = itemgetter(0)


class AlertStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    DONE = "done"  # a ONCE alert that fired
    EXPIRED = "expired"


class RequirementChanges(NamedTuple):
    added: frozenset[IndicatorKey]
    removed: frozenset[IndicatorKey]


def src_of(operand: Operand, outputs: OutputResolver, field: str) -> Src:
    """Resolve an operand (an indicator output name to its index)."""
    if isinstance(operand, PriceSource):
        return operand
    index = outputs(operand.key, operand.output)
    if index is None:
        raise InvalidAlert(f"{field}: {operand.key} has no output {operand.output!r}", field=field)
    return (operand.timeframe, operand.key, index)


class _History:
    """Closes of one stream at the bar closes of one timeframe (while needed)."""

    __slots__ = ("bars", "conds", "refs")

    def __init__(self) -> None:
        self.bars: deque[tuple[int, float | None]] = deque(maxlen=MAX_BARS)
        self.conds: list[_Cond] = []  # armed tick-evaluated movingUp/Down on it
        self.refs = 0

    def record(self, bar_start: int, value: float | None) -> bool:
        bars = self.bars
        if bars:
            last = bars[-1][0]
            if bar_start < last:
                return False
            if bar_start == last:  # a revised bar: its new close replaces the old
                bars[-1] = (bar_start, value)
                return True
        bars.append((bar_start, value))
        return True

    def window(self, n: int) -> list[float | None]:
        bars = self.bars
        return [v for _, v in islice(bars, max(0, len(bars) - n), None)]


class _Stream:
    __slots__ = ("general", "ix", "pending", "refs", "value")

    def __init__(self, value: float | None, floor: float) -> None:
        self.value = value
        self.ix: ThresholdIndex[_Cond] = ThresholdIndex(floor)
        self.ix.rebracket(value)
        self.general: list[_Cond] = []  # _K_GENERAL conditions reading this stream
        self.pending: list[_Cond] = []  # edges waiting for their baseline observation
        self.refs = 0


class _Cond:
    __slots__ = (
        "alert",
        "consts",
        "edge",
        "fired",
        "keys",
        "kind",
        "left",
        "move",
        "op",
        "parts",
        "pending",
        "prev_left",
        "prev_sample",
        "ref",
        "sample",
        "seen",
        "srcs",
        "stream",
        "streams",
        "thr",
        "truth",
    )

    def __init__(
        self,
        op: Operator,
        kind: int,
        left: Src,
        *,
        consts: tuple[float, ...],
        srcs: tuple[Src | float, ...],
        move: Movement | None,
    ) -> None:
        self.op = op
        self.kind = kind
        self.edge = op in EDGE_OPERATORS
        self.left = left
        self.consts = consts  # _K_CONST: (value,); _K_CHANNEL: (lower, upper)
        self.srcs = srcs  # _K_GENERAL: right operand, or the two channel bounds
        self.move = move
        self.keys: tuple[float, ...] = tuple(sorted(set(consts)))
        self.alert: _Alert
        self.stream: _Stream | None = None  # the left operand's stream
        self.parts: list[_Stream | float] = []  # _K_GENERAL: srcs as streams/constants
        self.streams: list[tuple[Src, _Stream]] = []  # every stream held (distinct)
        self.reset()

    def reset(self) -> None:
        self.pending = False
        self.truth = False
        self.seen = -1  # last event that evaluated it
        self.fired = -1  # last event at which the edge happened
        self.sample: Sample | None = None
        self.prev_sample: Sample | None = None
        self.prev_left: float | None = None
        self.thr: float | None = None
        self.ref: float | None = None


class _Alert:
    __slots__ = (
        "active",
        "alert",
        "cand",
        "close",
        "conds",
        "cooldown",
        "done",
        "edges",
        "eligible",
        "expired",
        "expires",
        "false",
        "in_heap",
        "last_bar",
        "last_close",
        "last_fired",
        "mode",
        "seq",
        "sym",
        "tf",
    )

    def __init__(
        self, alert: Alert, conds: list[_Cond], state: FireState, seq: int, sym: _Symbol
    ) -> None:
        self.alert = alert
        self.seq = seq
        self.sym = sym
        self.conds = conds
        self.edges = [c for c in conds if c.edge]
        for c in conds:
            c.alert = self
        t = alert.trigger
        self.mode = t.mode
        self.tf = t.timeframe
        self.close = t.mode is _CLOSE
        self.cooldown = t.cooldown_ms if t.cooldown_ms > 0 else 1
        self.expires = alert.expires_ms if alert.expires_ms is not None else _FOREVER
        self.done = state.done
        self.last_fired = state.last_fired_ms
        self.last_bar = state.last_bar_start_ms
        self.expired = False
        self.active = False
        self.in_heap = False
        self.false = 0
        self.cand = -1
        self.eligible = _NEVER
        self.last_close = state.last_bar_start_ms if t.mode is _CLOSE else None
        if t.mode is _EVERY and state.last_fired_ms is not None:
            self.eligible = state.last_fired_ms + self.cooldown
        elif t.mode is _PER_BAR and state.last_bar_start_ms is not None:
            assert t.timeframe is not None
            self.eligible = t.timeframe.bucket(state.last_bar_start_ms)[1]

    @property
    def open(self) -> bool:
        return not self.done and not self.expired

    @property
    def state(self) -> FireState:
        return FireState(self.done, self.last_fired, self.last_bar)


class _Symbol:
    __slots__ = (
        "ask",
        "bid",
        "close_ready",
        "closes",
        "hist",
        "ind",
        "last",
        "mid",
        "name",
        "prices",
        "raw",
        "ready",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = _Stream(None, 0.0)
        self.bid = _Stream(None, 0.0)
        self.ask = _Stream(None, 0.0)
        self.mid = _Stream(None, 0.0)
        self.prices = {
            PriceSource.LAST: self.last,
            PriceSource.BID: self.bid,
            PriceSource.ASK: self.ask,
            PriceSource.MID: self.mid,
        }
        #: Latest value tuple of every indicator key delivered for this symbol.
        self.raw: dict[tuple[Timeframe, str], tuple[float, ...] | None] = {}
        #: Indicator streams in use: (timeframe, key) -> output index -> stream.
        self.ind: dict[tuple[Timeframe, str], dict[int, _Stream]] = {}
        #: (eligible ms, tiebreak, alert) of level-only alerts whose levels all hold.
        self.ready: list[tuple[int, int, _Alert]] = []
        #: oncePerBarClose alerts read *close streams*: the values at the bar closes of
        #: their timeframe (timeframe -> operand -> stream), set only by on_bar_close.
        self.closes: dict[Timeframe, dict[Src, _Stream]] = {}
        #: Level-only oncePerBarClose alerts whose levels all hold (they fire at the
        #: next close of their timeframe), by timeframe, as an ordered set.
        self.close_ready: dict[Timeframe, dict[_Alert, None]] = {}
        #: Histories: bar timeframe -> stream -> closes.
        self.hist: dict[Timeframe, dict[Src, _History]] = {}


_NO_CANDS: list[_Alert] = []


class AlertEngine:
    """Indexed evaluation of armed alerts. Pure and synchronous; not thread-safe."""

    def __init__(
        self,
        *,
        outputs: OutputResolver = default_output_index,
        max_per_user: int | None = None,
    ) -> None:
        self._outputs = outputs
        self._max_per_user = max_per_user
        self._alerts: dict[str, _Alert] = {}
        self._symbols: dict[str, _Symbol] = {}
        self._owners: Counter[str] = Counter()  # open (not done/expired) alerts
        self._seq = 0
        self._event = 0
        #: Events offered for evaluation (trades, quotes, indicator values, closes):
        #: one increment per event, for /metrics. ``conditions_examined`` says how many
        #: of them moved a value onto or across some condition's threshold.
        self.evaluations = 0
        self._tiebreak = 0
        self._expiry: list[tuple[int, int, _Alert]] = []
        self._required: dict[IndicatorKey, int] = {}
        self._added: set[IndicatorKey] = set()
        self._removed: set[IndicatorKey] = set()
        #: Non-indexed conditions whose streams the current event updated.
        self._general_due: list[_Cond] = []

    # ------------------------------------------------------------------ alerts

    def __len__(self) -> int:
        return len(self._alerts)

    @property
    def conditions_examined(self) -> int:
        """Evaluation points that looked at conditions (the rest were settled by the
        index's bracket alone): the engine's event number."""
        return self._event

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._alerts

    def get(self, alert_id: str) -> Alert | None:
        a = self._alerts.get(alert_id)
        return a.alert if a is not None else None

    def status(self, alert_id: str) -> AlertStatus | None:
        a = self._alerts.get(alert_id)
        if a is None:
            return None
        if a.done:
            return AlertStatus.DONE
        if a.expired:
            return AlertStatus.EXPIRED
        return AlertStatus.ACTIVE if a.active else AlertStatus.DISABLED

    def fire_state(self, alert_id: str) -> FireState | None:
        """What to persist to restore the alert exactly-once (see ``restore``)."""
        a = self._alerts.get(alert_id)
        return a.state if a is not None else None

    def open_count(self, owner: str) -> int:
        """Alerts of ``owner`` that are neither done nor expired."""
        return self._owners[owner]

    def add(self, alert: Alert) -> None:
        """Arm a new alert (checked again here; nothing changes if it is invalid)."""
        alert = validate_alert(alert)
        if alert.id in self._alerts:
            raise InvalidAlert(f"alert {alert.id!r} already exists", field="id")
        limit = self._max_per_user
        if limit is not None and self._owners[alert.owner] >= limit:
            raise LimitExceeded(f"at most {limit} alerts per user", limit=limit)
        conds = self._compile(alert)
        self._seq += 1
        self._install(_Alert(alert, conds, FireState(), self._seq, self._symbol(alert.symbol)))

    def restore(self, alert: Alert, state: FireState | None = None) -> None:
        """Arm a stored alert with its persisted firing state (at start-up): a done
        ONCE alert stays done, a bar already fired in does not fire again, and the
        everyTime cooldown runs from the last firing. No per-user limit check."""
        alert = validate_alert(alert)
        if alert.id in self._alerts:
            raise InvalidAlert(f"alert {alert.id!r} already exists", field="id")
        conds = self._compile(alert)
        self._seq += 1
        sym = self._symbol(alert.symbol)
        self._install(_Alert(alert, conds, state or FireState(), self._seq, sym))

    def update(self, alert: Alert) -> None:
        """Replace an alert's definition and re-arm it (fresh baselines).

        A higher ``revision`` starts the firing state over (new dedup keys); the same
        revision keeps it (a done ONCE alert stays done); a lower one is refused.
        """
        alert = validate_alert(alert)
        old = self._get(alert.id)
        if alert.owner != old.alert.owner:
            raise InvalidAlert("an alert's owner cannot change", field="owner")
        if alert.revision < old.alert.revision:
            raise InvalidAlert(
                f"stale revision {alert.revision} (current {old.alert.revision})",
                field="revision",
            )
        conds = self._compile(alert)
        state = old.state if alert.revision == old.alert.revision else FireState()
        new = _Alert(alert, conds, state, old.seq, self._symbol(alert.symbol))
        # Arm the new definition before disarming the old one, so that what they
        # share (movingUp/Down histories, indicator streams) is kept, not rebuilt.
        if alert.enabled and new.open:
            self._activate(new)
        self._uninstall(old)
        self._install(new, activate=False)

    def remove(self, alert_id: str) -> bool:
        a = self._alerts.get(alert_id)
        if a is None:
            return False
        self._uninstall(a)
        return True

    def set_enabled(self, alert_id: str, enabled: bool) -> Alert:
        """Disarm or re-arm (re-arming takes fresh baselines; firing state is kept)."""
        a = self._get(alert_id)
        if a.alert.enabled != enabled:
            a.alert = replace(a.alert, enabled=enabled)
            if enabled and a.open:
                self._activate(a)
            elif not enabled:
                self._deactivate(a)
        return a.alert

    def expire(self, now_ms: int) -> list[str]:
        """Disarm the alerts whose expiry is at or before ``now_ms``; their ids, once.
        (An alert never fires at or after its expiry, whether or not this ran.)"""
        out: list[str] = []
        heap = self._expiry
        while heap and heap[0][0] <= now_ms:
            a = heappop(heap)[2]
            if self._alerts.get(a.alert.id) is not a or not a.open:
                continue
            a.expired = True
            self._deactivate(a)
            self._owners[a.alert.owner] -= 1
            out.append(a.alert.id)
        return out

    def required_indicators(self) -> frozenset[IndicatorKey]:
        """The (symbol, timeframe, key) streams armed alerts read."""
        return frozenset(self._required)

    def take_requirement_changes(self) -> RequirementChanges:
        """Net changes to ``required_indicators`` since the previous call."""
        changes = RequirementChanges(frozenset(self._added), frozenset(self._removed))
        self._added.clear()
        self._removed.clear()
        return changes

    def seed_history(
        self,
        symbol: str,
        timeframe: Timeframe,
        operand: Operand,
        closes: Iterable[tuple[int, float | None]],
    ) -> bool:
        """Prepend older closes (bar start, value) to a history armed alerts use (e.g.
        after a restart, from stored bars). ``False`` if no armed alert needs it."""
        st = self._symbols.get(symbol)
        src = src_of(operand, self._outputs, "operand")
        h = st.hist.get(timeframe, {}).get(src) if st is not None else None
        if st is None or h is None:
            return False
        first = h.bars[0][0] if h.bars else _FOREVER
        older = sorted((b, v) for b, v in closes if b < first)
        merged = [*dict(older).items(), *h.bars]
        h.bars = deque(merged[-MAX_BARS:], maxlen=MAX_BARS)
        for c in list(h.conds):
            truth = self._set_threshold(c, h)
            if truth != c.truth:
                self._set_truth(c, truth)
        return True

    # ------------------------------------------------------------------ events

    def on_trade(self, symbol: str, price: float, t_ms: int) -> list[Fired]:
        self.evaluations += 1
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbol(symbol)
        s = st.last
        ix = s.ix
        if ix.lo < price < ix.hi and not s.general:
            s.value = price
            ready = st.ready
            if ready and ready[0][0] <= t_ms:
                return self._finish(st, t_ms, _NO_CANDS, 0)
            return []
        if not 0.0 < price < _INF:
            return []
        self._event += 1
        ev = self._event
        cands: list[_Alert] = []
        self._update(s, price, ev, cands)
        return self._finish(st, t_ms, cands, ev)

    def on_quote(self, symbol: str, bid: float, ask: float, t_ms: int) -> list[Fired]:
        self.evaluations += 1
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbol(symbol)
        b = st.bid
        a = st.ask
        m = st.mid
        bix = b.ix
        aix = a.ix
        if bix.lo < bid < bix.hi and aix.lo < ask < aix.hi:
            mid = mid_price(bid, ask)
            mix = m.ix
            if mix.lo < mid < mix.hi and not (b.general or a.general or m.general):
                b.value = bid
                a.value = ask
                m.value = mid
                ready = st.ready
                if ready and ready[0][0] <= t_ms:
                    return self._finish(st, t_ms, _NO_CANDS, 0)
                return []
        bid_ok = 0.0 < bid < _INF
        ask_ok = 0.0 < ask < _INF
        if not (bid_ok or ask_ok):
            return []
        self._event += 1
        ev = self._event
        cands: list[_Alert] = []
        if bid_ok:
            self._update(b, bid, ev, cands)
        if ask_ok:
            self._update(a, ask, ev, cands)
        if bid_ok and ask_ok:
            self._update(m, mid_price(bid, ask), ev, cands)
        return self._finish(st, t_ms, cands, ev)

    def on_indicator(  # noqa: PLR0917 - the market pipeline's call shape
        self,
        symbol: str,
        timeframe: Timeframe,
        key: str,
        values: tuple[float, ...] | None,
        t_ms: int,
        bar_start_ms: int,
        final: bool,
    ) -> list[Fired]:
        """One indicator's outputs (``None`` while warming up). Provisional values (a
        forming bar's, at the time of the trade that moved it) are an evaluation point;
        final ones (a bar's close) only set the values (see ``on_indicators``)."""
        self.evaluations += 1
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbol(symbol)
        k = (timeframe, key)
        st.raw[k] = values
        outs = st.ind.get(k)
        if outs is None:
            ready = st.ready
            if not final and ready and ready[0][0] <= t_ms:
                return self._finish(st, t_ms, _NO_CANDS, 0)
            return []
        self._event += 1
        ev = self._event
        cands: list[_Alert] = []
        for index, s in outs.items():
            self._update(s, clean_output(values, index), ev, cands)
        return self._finish(st, t_ms, cands, ev, ticks=not final)

    def on_indicators(  # noqa: PLR0917 - the market pipeline's call shape
        self,
        symbol: str,
        timeframe: Timeframe,
        values: Mapping[str, tuple[float, ...] | None],
        t_ms: int,
        bar_start_ms: int,
        final: bool,
    ) -> list[Fired]:
        """Several indicators of one timeframe computed from the same bar update, as
        one event: a crossing of two of them (EMA vs SMA) is judged on both new values,
        never on one new and one old. ``final`` values (delivered at a bar's close,
        before ``on_bar_close``) are observed but fire nothing: a close is an evaluation
        point of oncePerBarClose alerts only."""
        self.evaluations += 1
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbol(symbol)
        self._event += 1
        ev = self._event
        cands: list[_Alert] = []
        for key, vals in values.items():
            k = (timeframe, key)
            st.raw[k] = vals
            outs = st.ind.get(k)
            if outs:
                for index, s in outs.items():
                    self._update(s, clean_output(vals, index), ev, cands)
        return self._finish(st, t_ms, cands, ev, ticks=not final)

    def on_bar_close(
        self, symbol: str, timeframe: Timeframe, bar_start_ms: int, t_ms: int
    ) -> list[Fired]:
        """A bar of ``timeframe`` closed: oncePerBarClose alerts of that timeframe are
        evaluated on the current values, then the closes are recorded in the
        movingUp/Down histories. ``t_ms`` is the bar's end: the time its firings carry.
        Tick trigger modes are not evaluated here (a close is no market event)."""
        self.evaluations += 1
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbol(symbol)
        self._event += 1
        ev = self._event
        out: list[tuple[int, Fired]] = []
        closes = st.closes.get(timeframe)
        if closes:  # the close streams take the closing values: an observation
            cands: list[_Alert] = []
            for src, s in closes.items():
                self._update(s, self._value(st, src), ev, cands)
            self._judge_general(ev, cands)
            for a in cands:
                if a.active and not a.false and self._close_allows(a, bar_start_ms, t_ms):
                    for c in a.edges:
                        if c.fired != ev:
                            break
                    else:
                        out.append((a.seq, self._fire(a, t_ms, bar_start_ms)))
            ready = st.close_ready.get(timeframe)
            if ready:
                for a in list(ready):
                    if self._close_allows(a, bar_start_ms, t_ms):
                        out.append((a.seq, self._fire(a, t_ms, bar_start_ms)))
        hists = st.hist.get(timeframe)
        if hists:
            for src, h in hists.items():
                if h.record(bar_start_ms, self._value(st, src)):
                    for c in h.conds:
                        truth = self._set_threshold(c, h)
                        if truth != c.truth:
                            self._set_truth(c, truth)
        return self._finish(st, t_ms, [], ev, out, ticks=False)

    # ------------------------------------------------------------------ evaluation

    def _update(self, s: _Stream, x: float | None, ev: int, cands: list[_Alert]) -> None:
        """Set a stream's value and re-evaluate what that can change."""
        prev = s.value
        s.value = x
        ix = s.ix
        rebracket = False
        if prev is None or x is None:
            if ix.keys and (prev is not None or x is not None):
                for c in ix.entries():
                    self._touch(c, prev, x, ev, cands)
            rebracket = True
        elif not ix.lo < x < ix.hi:
            if ix.keys:
                for c in ix.between(prev, x):
                    self._touch(c, prev, x, ev, cands)
            rebracket = True
        pending = s.pending
        if pending:  # this update is their baseline: they join the index after it
            for c in pending:
                c.pending = False
                for k in c.keys:
                    ix.add(k, c, None)
            pending.clear()
            rebracket = True
        if rebracket:
            ix.rebracket(x)
        if s.general:  # judged in _finish, once every stream of the event is set
            self._general_due.extend(s.general)

    def _touch(
        self, c: _Cond, prev: float | None, x: float | None, ev: int, cands: list[_Alert]
    ) -> None:
        """An indexed condition whose threshold the stream moved onto or across."""
        if c.seen == ev:  # a channel's two bounds
            return
        c.seen = ev
        if c.edge:
            if (
                prev is not None
                and x is not None
                and crossed(c.op, (prev, *c.consts), (x, *c.consts))
            ):
                c.fired = ev
                c.prev_left = prev
                a = c.alert
                if a.cand != ev:
                    a.cand = ev
                    cands.append(a)
            return
        if x is None:
            truth = False
        elif c.kind == _K_MOVING:
            assert c.thr is not None
            truth = holds(c.op, (x, c.thr))
        else:
            truth = holds(c.op, (x, *c.consts))
        if truth != c.truth:
            self._set_truth(c, truth)

    def _general(self, c: _Cond, ev: int, cands: list[_Alert]) -> None:
        if c.seen == ev:
            return
        c.seen = ev
        cur = self._sample(c)
        if c.edge:
            prev = c.sample
            c.sample = cur
            if prev is not None and cur is not None and crossed(c.op, prev, cur):
                c.fired = ev
                c.prev_sample = prev
                a = c.alert
                if a.cand != ev:
                    a.cand = ev
                    cands.append(a)
            return
        c.sample = cur
        truth = cur is not None and holds(c.op, cur)
        if truth != c.truth:
            self._set_truth(c, truth)

    def _set_truth(self, c: _Cond, truth: bool) -> None:
        c.truth = truth
        a = c.alert
        if truth:
            a.false -= 1
            if not a.false and not a.edges:
                if a.close:
                    assert a.tf is not None
                    a.sym.close_ready.setdefault(a.tf, {})[a] = None
                elif not a.in_heap:
                    self._push(a)
        else:
            a.false += 1
            if a.close and a.false == 1 and not a.edges:
                self._unready(a)

    def _unready(self, a: _Alert) -> None:
        assert a.tf is not None
        ready = a.sym.close_ready.get(a.tf)
        if ready is not None and a in ready:
            del ready[a]
            if not ready:
                del a.sym.close_ready[a.tf]

    def _push(self, a: _Alert) -> None:
        self._tiebreak += 1
        heappush(a.sym.ready, (a.eligible, self._tiebreak, a))
        a.in_heap = True

    def _finish(
        self,
        st: _Symbol,
        t: int,
        cands: list[_Alert],
        ev: int,
        out: list[tuple[int, Fired]] | None = None,
        *,
        ticks: bool = True,
    ) -> list[Fired]:
        """Fire what is true and allowed at the end of an event. ``ticks=False``: the
        event is a bar close (or its final values), which is no evaluation point of the
        tick trigger modes (conditions.py): their state is updated, nothing fires."""
        if out is None:
            out = []
        if self._general_due:
            self._judge_general(ev, cands)
        if not ticks:
            if len(out) > 1:
                out.sort(key=_first)
            return [f for _, f in out]
        for a in cands:
            if a.active and not a.false and a.eligible <= t < a.expires:
                for c in a.edges:
                    if c.fired != ev:
                        break
                else:
                    out.append((a.seq, self._fire(a, t)))
        heap = st.ready
        while heap and heap[0][0] <= t:
            a = heappop(heap)[2]
            a.in_heap = False
            if not a.active or a.false:
                continue  # went false (or was disarmed): dropped until true again
            if a.eligible > t:
                self._push(a)
                continue
            if t >= a.expires:
                continue
            out.append((a.seq, self._fire(a, t)))
            if a.active:
                self._push(a)
        if not out:
            return []
        if len(out) > 1:
            out.sort(key=_first)
        return [f for _, f in out]

    def _judge_general(self, ev: int, cands: list[_Alert]) -> None:
        due = self._general_due
        for c in due:
            self._general(c, ev, cands)
        due.clear()

    @staticmethod
    def _close_allows(a: _Alert, bar_start: int, t: int) -> bool:
        return t < a.expires and (a.last_close is None or bar_start > a.last_close)

    def _fire(self, a: _Alert, t: int, bar_start: int | None = None) -> Fired:
        alert = a.alert
        rev = alert.revision
        values = self._values(a)
        mode = a.mode
        done = False
        a.last_fired = t
        if mode is _EVERY:
            key = f"r{rev}:t:{t}"
            a.eligible = t + a.cooldown
            a.last_bar = None
        elif mode is _PER_BAR:
            assert a.tf is not None
            bar_start, end = a.tf.bucket(t)
            key = f"r{rev}:bar:{bar_start}"
            a.eligible = end
            a.last_bar = bar_start
        elif mode is _CLOSE:
            key = f"r{rev}:close:{bar_start}"
            a.last_close = a.last_bar = bar_start
        else:
            key = f"r{rev}:once"
            done = True
            a.done = True
            a.last_bar = None
            self._deactivate(a)
            self._owners[alert.owner] -= 1
        return Fired(
            alert.id, alert.owner, alert.symbol, rev, key, t, mode, bar_start, done, values
        )

    def _values(self, a: _Alert) -> tuple[ConditionValues, ...]:
        out: list[ConditionValues] = []
        for c in a.conds:
            prev: Sample | None = None
            if c.kind == _K_GENERAL:
                cur = c.sample
                if c.edge:
                    prev = c.prev_sample
            else:
                assert c.stream is not None
                x = c.stream.value
                assert x is not None
                if c.kind == _K_MOVING:
                    assert c.thr is not None and c.ref is not None
                    cur = (x, c.thr, c.ref)
                else:
                    cur = (x, *c.consts)
                    if c.edge:
                        assert c.prev_left is not None
                        prev = (c.prev_left, *c.consts)
            assert cur is not None
            out.append(condition_values(c.op, cur, prev))
        return tuple(out)

    def _value(self, st: _Symbol, src: Src) -> float | None:
        if isinstance(src, PriceSource):
            return st.prices[src].value
        return clean_output(st.raw.get((src[0], src[1])), src[2])

    @staticmethod
    def _sample(c: _Cond) -> Sample | None:
        """A non-indexed condition's values, from its streams."""
        assert c.stream is not None
        x = c.stream.value
        if x is None:
            return None
        out = [x]
        for p in c.parts:
            v = p if isinstance(p, float) else p.value
            if v is None:
                return None
            out.append(v)
        return tuple(out)

    def _set_threshold(self, c: _Cond, h: _History) -> bool:
        """Recompute a tick-evaluated movement's threshold, move its index entry, and
        return its truth on the current value."""
        move = c.move
        s = c.stream
        assert move is not None and s is not None
        ref = window_reference(c.op, h.window(move.bars))
        thr = moving_threshold(c.op, move, ref)
        if thr != c.thr:
            if c.thr is not None:
                s.ix.discard(c.thr, c)
            if thr is not None:
                s.ix.add(thr, c, s.value)
        c.ref = ref
        c.thr = thr
        x = s.value
        return thr is not None and x is not None and holds(c.op, (x, thr))

    # ------------------------------------------------------------------ arming

    def _get(self, alert_id: str) -> _Alert:
        a = self._alerts.get(alert_id)
        if a is None:
            raise InvalidAlert(f"no alert {alert_id!r}", field="id")
        return a

    def _symbol(self, name: str) -> _Symbol:
        st = self._symbols.get(name)
        if st is None:
            st = self._symbols[name] = _Symbol(name)
        return st

    def _compile(self, alert: Alert) -> list[_Cond]:
        out: list[_Cond] = []
        for i, cond in enumerate(alert.conditions):
            field = f"conditions[{i}]"
            left = src_of(cond.left, self._outputs, f"{field}.left")
            r = cond.right
            if isinstance(r, float):
                out.append(_Cond(cond.op, _K_CONST, left, consts=(r,), srcs=(), move=None))
            elif isinstance(r, Movement):
                out.append(_Cond(cond.op, _K_MOVING, left, consts=(), srcs=(), move=r))
            elif isinstance(r, Channel):
                lo, hi = r.lower, r.upper
                if isinstance(lo, float) and isinstance(hi, float):
                    out.append(
                        _Cond(cond.op, _K_CHANNEL, left, consts=(lo, hi), srcs=(), move=None)
                    )
                else:
                    srcs = tuple(
                        b if isinstance(b, float) else src_of(b, self._outputs, f"{field}.channel")
                        for b in (lo, hi)
                    )
                    out.append(_Cond(cond.op, _K_GENERAL, left, consts=(), srcs=srcs, move=None))
            else:
                right = src_of(r, self._outputs, f"{field}.right")
                out.append(_Cond(cond.op, _K_GENERAL, left, consts=(), srcs=(right,), move=None))
        return out

    def _install(self, a: _Alert, activate: bool = True) -> None:
        alert = a.alert
        self._alerts[alert.id] = a
        if a.open:
            self._owners[alert.owner] += 1
        if alert.expires_ms is not None:
            self._tiebreak += 1
            heappush(self._expiry, (alert.expires_ms, self._tiebreak, a))
        if activate and alert.enabled and a.open:
            self._activate(a)

    def _uninstall(self, a: _Alert) -> None:
        self._deactivate(a)
        del self._alerts[a.alert.id]
        if a.open:
            self._owners[a.alert.owner] -= 1

    def _activate(self, a: _Alert) -> None:
        st = a.sym
        ctf = a.tf if a.close else None  # close streams for oncePerBarClose
        a.active = True
        a.false = 0
        for c in a.conds:
            c.reset()
            self._require(st, c, 1)
            s = self._stream(st, c.left, ctf)
            c.stream = s
            c.streams = [(c.left, s)]
            kind = c.kind
            if kind in (_K_CONST, _K_CHANNEL):
                if c.edge:
                    c.pending = True
                    s.pending.append(c)
                    s.ix.force()
                else:
                    for k in c.keys:
                        s.ix.add(k, c, s.value)
                    x = s.value
                    c.truth = x is not None and holds(c.op, (x, *c.consts))
            elif kind == _K_MOVING:
                h = self._history(st, c)
                h.conds.append(c)
                c.truth = self._set_threshold(c, h)
            else:
                s.general.append(c)
                parts: list[_Stream | float] = []
                for p in c.srcs:
                    if isinstance(p, float):
                        parts.append(p)
                        continue
                    held = next((s2 for q, s2 in c.streams if q == p), None)
                    if held is None:
                        held = self._stream(st, p, ctf)
                        held.general.append(c)
                        c.streams.append((p, held))
                    parts.append(held)
                c.parts = parts
                if not c.edge:
                    c.sample = self._sample(c)
                    c.truth = c.sample is not None and holds(c.op, c.sample)
            if not c.edge and not c.truth:
                a.false += 1
        if a.edges or a.false:
            return
        if a.close:
            assert a.tf is not None
            st.close_ready.setdefault(a.tf, {})[a] = None
        elif not a.in_heap:
            self._push(a)

    def _deactivate(self, a: _Alert) -> None:
        if not a.active:
            return
        a.active = False
        st = a.sym
        ctf = a.tf if a.close else None
        for c in a.conds:
            self._require(st, c, -1)
            s = c.stream
            assert s is not None
            kind = c.kind
            if kind in (_K_CONST, _K_CHANNEL):
                if c.pending:
                    s.pending.remove(c)
                    c.pending = False
                else:
                    for k in c.keys:
                        s.ix.discard(k, c)
            elif kind == _K_MOVING:
                if c.thr is not None:
                    s.ix.discard(c.thr, c)
                    c.thr = None
                self._release_history(st, c)
            else:
                for _, s2 in c.streams:
                    s2.general.remove(c)
            for src, s2 in c.streams:
                self._release_stream(st, src, s2, ctf)
            c.streams = []
            c.parts = []
            c.stream = None
        if a.close:
            self._unready(a)

    def _stream(self, st: _Symbol, src: Src, close_tf: Timeframe | None) -> _Stream:
        """The stream of an operand (held: released by ``_release_stream``): the live
        one, or with ``close_tf`` the one holding its values at closes of close_tf."""
        price = isinstance(src, PriceSource)
        if close_tf is not None:
            streams = st.closes.setdefault(close_tf, {})
            s = streams.get(src)
            if s is None:
                s = streams[src] = _Stream(None, 0.0 if price else -_INF)
        elif isinstance(src, PriceSource):
            s = st.prices[src]
        else:
            k = (src[0], src[1])
            outs = st.ind.get(k)
            if outs is None:
                outs = st.ind[k] = {}
            found = outs.get(src[2])
            if found is None:
                found = outs[src[2]] = _Stream(clean_output(st.raw.get(k), src[2]), -_INF)
            s = found
        s.refs += 1
        return s

    def _release_stream(
        self, st: _Symbol, src: Src, s: _Stream, close_tf: Timeframe | None
    ) -> None:
        s.refs -= 1
        if s.refs:
            return
        if close_tf is not None:
            streams = st.closes[close_tf]
            del streams[src]
            if not streams:
                del st.closes[close_tf]
        elif not isinstance(src, PriceSource):
            k = (src[0], src[1])
            outs = st.ind[k]
            del outs[src[2]]
            if not outs:
                del st.ind[k]

    def _history(self, st: _Symbol, c: _Cond) -> _History:
        assert c.move is not None
        by_src = st.hist.setdefault(c.move.timeframe, {})
        h = by_src.get(c.left)
        if h is None:
            h = by_src[c.left] = _History()
        h.refs += 1
        return h

    def _release_history(self, st: _Symbol, c: _Cond) -> None:
        assert c.move is not None
        by_src = st.hist[c.move.timeframe]
        h = by_src[c.left]
        if c in h.conds:
            h.conds.remove(c)
        h.refs -= 1
        if not h.refs:
            del by_src[c.left]
            if not by_src:
                del st.hist[c.move.timeframe]

    def _require(self, st: _Symbol, c: _Cond, delta: int) -> None:
        for src in (c.left, *c.srcs):
            if isinstance(src, tuple):
                key = IndicatorKey(st.name, src[0], src[1])
                n = self._required.get(key, 0) + delta
                if n:
                    self._required[key] = n
                else:
                    del self._required[key]
                if n == 1 and delta == 1:
                    if key in self._removed:
                        self._removed.discard(key)
                    else:
                        self._added.add(key)
                elif n == 0:
                    if key in self._added:
                        self._added.discard(key)
                    else:
                        self._removed.add(key)
