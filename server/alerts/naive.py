"""The reference evaluator: every event re-evaluates every armed alert of its symbol
from scratch, exactly as ``server.alerts.conditions`` describes. No index, no cached
truth, no ready heap. The tests check that ``AlertEngine`` fires exactly what this
fires, and the benchmark measures what the index saves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from server.alerts.conditions import (
    Sample,
    clean_output,
    condition_values,
    crossed,
    holds,
    mid_price,
    moving_threshold,
    valid_price,
    window_reference,
)
from server.alerts.engine import Src, src_of
from server.alerts.model import (
    EDGE_OPERATORS,
    MAX_BARS,
    Alert,
    Channel,
    ConditionValues,
    Fired,
    FireState,
    InvalidAlert,
    Movement,
    Operator,
    OutputResolver,
    PriceSource,
    TriggerMode,
    default_output_index,
    fire_key,
)
from server.alerts.validation import validate_alert
from server.market.timeframes import Timeframe

_NEVER = -(1 << 62)
_FOREVER = 1 << 62

#: What an event updated: price sources, or (timeframe, key) of indicators.
_Touched = PriceSource | tuple[Timeframe, str]


@dataclass(slots=True)
class _C:
    op: Operator
    left: Src
    right: tuple[Src | float, ...]  # constant/operand, or the two channel bounds
    move: Movement | None

    @property
    def edge(self) -> bool:
        return self.op in EDGE_OPERATORS


@dataclass(slots=True)
class _A:
    alert: Alert
    seq: int
    conds: list[_C]
    state: FireState
    prev: list[Sample | None] = field(default_factory=list)
    done: bool = False
    expired: bool = False
    active: bool = False

    @property
    def open(self) -> bool:
        return not self.done and not self.expired


class NaiveEngine:
    """``scan_all``: loop over every alert on every event (skipping other symbols'),
    instead of over the event's symbol's alerts."""

    def __init__(
        self, *, outputs: OutputResolver = default_output_index, scan_all: bool = False
    ) -> None:
        self._outputs = outputs
        self._scan_all = scan_all
        self._alerts: dict[str, _A] = {}
        self._by_symbol: dict[str, list[_A]] = {}
        self._dirty = False  # an alert was disarmed: histories may be unneeded
        self._seq = 0
        self._prices: dict[str, dict[PriceSource, float | None]] = {}
        self._raw: dict[str, dict[tuple[Timeframe, str], tuple[float, ...] | None]] = {}
        self._hist: dict[tuple[str, Timeframe, Src], list[tuple[int, float | None]]] = {}

    # ------------------------------------------------------------------ alerts

    def _compile(self, alert: Alert) -> list[_C]:
        out = []
        for c in alert.conditions:
            left = src_of(c.left, self._outputs, "left")
            r = c.right
            move = None
            right: tuple[Src | float, ...]
            if isinstance(r, float):
                right = (r,)
            elif isinstance(r, Movement):
                right, move = (), r
            elif isinstance(r, Channel):
                right = tuple(
                    b if isinstance(b, float) else src_of(b, self._outputs, "channel")
                    for b in (r.lower, r.upper)
                )
            else:
                right = (src_of(r, self._outputs, "right"),)
            out.append(_C(c.op, left, right, move))
        return out

    def _arm(self, a: _A) -> None:
        a.active = a.alert.enabled and a.open
        a.prev = [None] * len(a.conds)

    def add(self, alert: Alert) -> None:
        self.restore(alert, FireState())

    def restore(self, alert: Alert, state: FireState | None = None) -> None:
        alert = validate_alert(alert)
        if alert.id in self._alerts:
            raise InvalidAlert(f"alert {alert.id!r} already exists")
        self._seq += 1
        st = state or FireState()
        a = _A(alert, self._seq, self._compile(alert), st, done=st.done)
        self._arm(a)
        self._alerts[alert.id] = a
        self._by_symbol.setdefault(alert.symbol, []).append(a)

    def update(self, alert: Alert) -> None:
        alert = validate_alert(alert)
        old = self._alerts[alert.id]
        if alert.revision < old.alert.revision:
            raise InvalidAlert("stale revision")
        state = old.state if alert.revision == old.alert.revision else FireState()
        a = _A(alert, old.seq, self._compile(alert), state, done=state.done)
        self._arm(a)
        self._alerts[alert.id] = a
        self._by_symbol[old.alert.symbol].remove(old)
        mine = self._by_symbol.setdefault(alert.symbol, [])
        mine.append(a)
        mine.sort(key=_seq)
        self._prune()

    def remove(self, alert_id: str) -> bool:
        a = self._alerts.pop(alert_id, None)
        if a is None:
            return False
        self._by_symbol[a.alert.symbol].remove(a)
        self._prune()
        return True

    def set_enabled(self, alert_id: str, enabled: bool) -> Alert:
        a = self._alerts[alert_id]
        if a.alert.enabled != enabled:
            a.alert = replace(a.alert, enabled=enabled)
            if enabled:
                self._arm(a)
            else:
                a.active = False
            self._prune()
        return a.alert

    def expire(self, now_ms: int) -> list[str]:
        out = []
        for a in sorted(self._alerts.values(), key=lambda a: a.seq):
            exp = a.alert.expires_ms
            if exp is not None and exp <= now_ms and a.open:
                a.expired = True
                a.active = False
                out.append(a.alert.id)
        self._prune()
        return out

    def fire_state(self, alert_id: str) -> FireState:
        return self._alerts[alert_id].state

    # ------------------------------------------------------------------ events

    def on_trade(self, symbol: str, price: float, t_ms: int) -> list[Fired]:
        if not valid_price(price):
            return []
        self._prices.setdefault(symbol, {})[PriceSource.LAST] = price
        return self._evaluate(symbol, t_ms, {PriceSource.LAST})

    def on_quote(self, symbol: str, bid: float, ask: float, t_ms: int) -> list[Fired]:
        prices = self._prices.setdefault(symbol, {})
        touched: set[_Touched] = set()
        if valid_price(bid):
            prices[PriceSource.BID] = bid
            touched.add(PriceSource.BID)
        if valid_price(ask):
            prices[PriceSource.ASK] = ask
            touched.add(PriceSource.ASK)
        if len(touched) == 2:
            prices[PriceSource.MID] = mid_price(bid, ask)
            touched.add(PriceSource.MID)
        if not touched:
            return []
        return self._evaluate(symbol, t_ms, touched)

    def on_indicator(  # noqa: PLR0917 - same shape as AlertEngine's
        self,
        symbol: str,
        timeframe: Timeframe,
        key: str,
        values: tuple[float, ...] | None,
        t_ms: int,
        bar_start_ms: int,
        final: bool,
    ) -> list[Fired]:
        return self.on_indicators(symbol, timeframe, {key: values}, t_ms, bar_start_ms, final)

    def on_indicators(  # noqa: PLR0917 - same shape as AlertEngine's
        self,
        symbol: str,
        timeframe: Timeframe,
        values: Mapping[str, tuple[float, ...] | None],
        t_ms: int,
        bar_start_ms: int,
        final: bool,
    ) -> list[Fired]:
        raw = self._raw.setdefault(symbol, {})
        touched: set[_Touched] = set()
        for key, vals in values.items():
            raw[(timeframe, key)] = vals
            touched.add((timeframe, key))
        return self._evaluate(symbol, t_ms, touched, ticks=not final)

    def on_bar_close(
        self, symbol: str, timeframe: Timeframe, bar_start_ms: int, t_ms: int
    ) -> list[Fired]:
        return self._evaluate(symbol, t_ms, set(), (timeframe, bar_start_ms), ticks=False)

    # ------------------------------------------------------------------ evaluation

    def _value(self, symbol: str, src: Src) -> float | None:
        if isinstance(src, PriceSource):
            return self._prices.get(symbol, {}).get(src)
        return clean_output(self._raw.get(symbol, {}).get((src[0], src[1])), src[2])

    def _sample(self, symbol: str, c: _C) -> Sample | None:
        x = self._value(symbol, c.left)
        if x is None:
            return None
        if c.move is not None:
            bars = self._hist.get((symbol, c.move.timeframe, c.left), [])
            window = [v for _, v in bars[-c.move.bars :]]
            ref = window_reference(c.op, window)
            thr = moving_threshold(c.op, c.move, ref)
            return None if thr is None or ref is None else (x, thr, ref)
        out = [x]
        for p in c.right:
            v = p if isinstance(p, float) else self._value(symbol, p)
            if v is None:
                return None
            out.append(v)
        return tuple(out)

    @staticmethod
    def _observed(c: _C, touched: set[_Touched]) -> bool:
        for src in (c.left, *c.right):
            if isinstance(src, float):
                continue
            if isinstance(src, PriceSource):
                if src in touched:
                    return True
            elif (src[0], src[1]) in touched:
                return True
        return False

    def _evaluate(
        self,
        symbol: str,
        t: int,
        touched: set[_Touched],
        close: tuple[Timeframe, int] | None = None,
        *,
        ticks: bool = True,
    ) -> list[Fired]:
        """``ticks=False``: a bar close or its final values: tick-mode alerts observe
        (edges take the new values as their previous ones) but do not fire."""
        out: list[tuple[int, Fired]] = []
        if self._scan_all:
            mine = [a for a in self._alerts.values() if a.alert.symbol == symbol]
        else:
            mine = self._by_symbol.get(symbol, [])
        if close is not None:
            tf, bar_start = close
            for a in mine:
                trig = a.alert.trigger
                if (
                    a.active
                    and trig.mode is TriggerMode.ONCE_PER_BAR_CLOSE
                    and trig.timeframe is tf
                ):
                    f = self._close_eval(a, t, bar_start)
                    if f is not None:
                        out.append((a.seq, f))
            for src in sorted(self._needed(symbol, tf), key=repr):
                bars = self._hist.setdefault((symbol, tf, src), [])
                value = self._value(symbol, src)
                if bars and bars[-1][0] > bar_start:
                    continue
                if bars and bars[-1][0] == bar_start:
                    bars[-1] = (bar_start, value)
                else:
                    bars.append((bar_start, value))
                    del bars[:-MAX_BARS]
        for a in mine:
            if not a.active or a.alert.trigger.mode is TriggerMode.ONCE_PER_BAR_CLOSE:
                continue
            ok = True
            values: list[tuple[Sample | None, Sample | None]] = []
            for i, c in enumerate(a.conds):
                cur = self._sample(symbol, c)
                prev = None
                if c.edge:
                    hit = False
                    if self._observed(c, touched):
                        prev = a.prev[i]
                        a.prev[i] = cur
                        hit = prev is not None and cur is not None and crossed(c.op, prev, cur)
                else:
                    hit = cur is not None and holds(c.op, cur)
                values.append((cur, prev))
                ok = ok and hit
            if ok and ticks:
                f = self._maybe_fire(a, t, values, None)
                if f is not None:
                    out.append((a.seq, f))
        if self._dirty:
            self._prune()
        if not out:
            return []
        out.sort(key=lambda p: p[0])
        return [f for _, f in out]

    def _close_eval(self, a: _A, t: int, bar_start: int) -> Fired | None:
        ok = True
        values: list[tuple[Sample | None, Sample | None]] = []
        for i, c in enumerate(a.conds):
            cur = self._sample(a.alert.symbol, c)
            prev = None
            if c.edge:
                prev = a.prev[i]
                a.prev[i] = cur
                hit = prev is not None and cur is not None and crossed(c.op, prev, cur)
            else:
                hit = cur is not None and holds(c.op, cur)
            values.append((cur, prev))
            ok = ok and hit
        if not ok:
            return None
        last = a.state.last_bar_start_ms
        if last is not None and bar_start <= last:
            return None
        return self._maybe_fire(a, t, values, bar_start)

    def _maybe_fire(
        self,
        a: _A,
        t: int,
        values: list[tuple[Sample | None, Sample | None]],
        close_bar: int | None,
    ) -> Fired | None:
        alert = a.alert
        trig = alert.trigger
        if alert.expires_ms is not None and t >= alert.expires_ms:
            return None
        st = a.state
        rev = alert.revision
        mode = trig.mode
        bar: int | None = None
        done = False
        if mode is TriggerMode.EVERY_TIME:
            cooldown = max(trig.cooldown_ms, 1)
            if st.last_fired_ms is not None and t < st.last_fired_ms + cooldown:
                return None
            key = fire_key(rev, "t", t)
            a.state = FireState(False, t, None)
        elif mode is TriggerMode.ONCE_PER_BAR:
            assert trig.timeframe is not None
            bar = trig.timeframe.bucket(t)[0]
            last = st.last_bar_start_ms
            if last is not None and bar <= last:
                return None
            key = fire_key(rev, "bar", bar)
            a.state = FireState(False, t, bar)
        elif mode is TriggerMode.ONCE_PER_BAR_CLOSE:
            bar = close_bar
            key = fire_key(rev, "close", bar)
            a.state = FireState(False, t, bar)
        else:
            key = fire_key(rev, "once")
            done = True
            a.state = FireState(True, t, None)
            a.done = True
            a.active = False
            self._dirty = True
        cvs: list[ConditionValues] = []
        for c, (cur, prev) in zip(a.conds, values, strict=True):
            assert cur is not None
            cvs.append(condition_values(c.op, cur, prev if c.edge else None))
        return Fired(alert.id, alert.owner, alert.symbol, rev, key, t, mode, bar, done, tuple(cvs))

    def _needed(self, symbol: str, tf: Timeframe) -> set[Src]:
        return {
            c.left
            for a in self._by_symbol.get(symbol, [])
            if a.active
            for c in a.conds
            if c.move is not None and c.move.timeframe is tf
        }

    def _prune(self) -> None:
        self._dirty = False
        needed = {
            (a.alert.symbol, c.move.timeframe, c.left)
            for a in self._alerts.values()
            if a.active
            for c in a.conds
            if c.move is not None
        }
        for k in [k for k in self._hist if k not in needed]:
            del self._hist[k]


def _seq(a: _A) -> int:
    return a.seq
