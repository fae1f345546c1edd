"""Alert semantics: what every operator and trigger mode means. This docstring is the
contract; ``AlertEngine`` (indexed) and ``NaiveEngine`` (a loop over every alert)
implement it, and the tests check that they agree.

Values and observations
    Each symbol has the streams LAST (last trade price), BID, ASK, MID ((bid+ask)/2)
    and indicator outputs (timeframe, key, output). A stream's value is a float or
    *unknown* (no trade yet, indicator warming up, NaN). A trade updates LAST; a quote
    updates BID and ASK and, when both are valid, MID; a side that is not a finite
    positive number is ignored (a quote with no valid side, or a trade with an invalid
    price, is dropped entirely and is no evaluation). An indicator update sets every
    output of that key (``on_indicators`` sets several keys in one event). A
    condition is *observed* at an input event that updates one of its streams.

Evaluation points and the time a firing carries
    An alert is evaluated only on events of its symbol, and a firing carries the time of
    the event it was evaluated on; nothing is evaluated at a time between events.

    - Tick trigger modes (once, oncePerBar, everyTime): at every trade that may set the
      last price (``on_trade``; the consolidated tape's condition rules decide which),
      every accepted quote (``on_quote``) and every provisional indicator update
      (``on_indicator(s)`` with ``final`` false: a forming bar moved by a trade, at
      that trade's time). The firing carries that event's exchange time.
    - oncePerBarClose(tf): only at ``on_bar_close(symbol, tf)``, and the firing carries
      the bar's *end* (its interval is ``[start, end)``), whether the close was caused
      by the first trade of a later bar or by the feed clock passing the end while the
      symbol was quiet.
    - A bar close and the final indicator values delivered with it (``final`` true)
      are observations (values are set, an edge compares with them next time) but
      never an evaluation point of the tick modes: a close caused by the clock is no
      market event, and its values equal the last provisional ones anyway.

    Time only moves with input events: a condition that stays true fires again (when
    its trigger mode allows) at the next event of the symbol, not on a timer.

Levels (greaterThan, lessThan, insideChannel, outsideChannel, movingUp, movingDown)
    True at an evaluation when the current values satisfy the predicate, whenever they
    were set; an unknown value makes a level false. They need no baseline: an alert
    armed while LAST is already above its greaterThan level fires at the next event.

    - greaterThan: left > right (strict: not at equality). lessThan: left < right.
    - insideChannel: lower <= left <= upper (bounds inclusive); outsideChannel is its
      negation: left < lower or left > upper. Operand bounds are taken as
      (min, max) of the two values, so a swapped pair still describes the channel.
    - movingUp: left >= ref + by, where ref is the lowest known close among the last
      ``bars`` closed bars of the timeframe (by percent: ref + |ref| * by / 100;
      false when ref is 0). movingDown: left <= ref - by, ref the highest close.
      "Within N bars" thus means: the rise from the window's low to now is at least
      ``by`` (the fall from its high, for movingDown). A close is the operand's value
      at ``on_bar_close(symbol, timeframe)`` (a second call for the same bar, a
      revision, replaces it; there are no bars without a call). Only closes recorded
      while some armed alert needed that history are known (older ones can be
      seeded with ``seed_history``); with fewer than ``bars`` closes the available
      ones form the window, with none the condition is false.

Edges (crossing, crossingUp, crossingDown, enteringChannel, exitingChannel)
    True only at an observation, comparing the condition's values at this observation
    with those at its previous one (TradingView's ``ta.crossover``/``ta.crossunder``):

    - crossingUp:   previous left <= previous right  and  left > right
    - crossingDown: previous left >= previous right  and  left < right
    - crossing: either of them.
    - enteringChannel: previously outside, now inside; exitingChannel: the reverse.

    So crossingUp is the rising edge of greaterThan and crossingDown of lessThan.
    Ties: reaching the level exactly (99 -> 100 against 100) is not a crossing up;
    leaving it upwards (100 -> 101) is. 99 -> 100 -> 99 gives a crossingDown at the
    second step (it was "not below", now below) and no crossingUp. Gaps count: 90 ->
    110 crosses 100 whatever lies between. A jump over a whole channel (below ->
    above) neither enters nor exits it. Both observations must be fully known. The
    first observation after the condition is armed (added, enabled, restored,
    updated) is only a baseline and never fires; a level change while disarmed is
    therefore never reported as a crossing afterwards.

AND
    An alert fires at an evaluation where all of its conditions are true at once:
    every level holds on the current values and every edge happened at this very
    event. Two edges on streams updated by different events can therefore never fire
    together (use one edge plus levels); BID crossingUp AND ASK crossingUp can (one
    quote updates both). An alert made only of levels is true for as long as they
    hold; an alert with an edge is true only at the events of that edge.

Trigger modes (a true evaluation at time t fires only if t < expiresMs, and ...)
    - once: the first time; the alert is then done (never armed again, unless an
      update with a higher revision replaces it).
    - oncePerBar(tf): if no firing happened yet in the tf bar holding t (key: the bar
      start). A level alert that stays true fires at the first event of each bar.
    - everyTime(cooldown): if t >= last firing + max(cooldown, 1 ms) (key: t; so at
      most one firing per millisecond). A level alert that stays true fires again at
      the first event after each cooldown; an edge during the cooldown is skipped,
      not postponed.
    - oncePerBarClose(tf): evaluated only at ``on_bar_close(symbol, tf)``, on the
      values current then (deliver a bar's final indicator values before its close,
      and the close before the trade that opened the next bar). Every condition is
      observed at each such close: edges compare with the values at the previous
      close evaluated since arming. The closing bar's own close is recorded in the
      movingUp/Down histories after the evaluation, so the window is the bars before
      it. Fires at most once per bar start (a re-emitted close of a revised bar does
      not fire again).
    Expiry: ``expire(now)`` disarms expired alerts and reports each one once; an
    alert never fires at or after its expiry whether or not ``expire`` ran.

Exactly-once
    Firing keys are deterministic (see ``Fired.key``) and firing state can be restored
    (``FireState``), so once/bar keys never repeat and the everyTime cooldown runs from
    the persisted last firing time after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from server.alerts.model import ConditionValues, Movement, Operator
from server.market import prices

#: A condition's values at one observation: (left, right) for comparisons and
#: constants, (left, lower, upper) for channels, (left, threshold, ref) for movements.
Sample = tuple[float, ...]

_GT = Operator.GREATER_THAN
_LT = Operator.LESS_THAN
_UP = Operator.CROSSING_UP
_DOWN = Operator.CROSSING_DOWN
_CROSS = Operator.CROSSING
_INSIDE = Operator.INSIDE_CHANNEL
_OUTSIDE = Operator.OUTSIDE_CHANNEL
_ENTER = Operator.ENTERING_CHANNEL
_EXIT = Operator.EXITING_CHANNEL
_MUP = Operator.MOVING_UP
_MDOWN = Operator.MOVING_DOWN


#: Exact at the feed's precision: a mid exactly at a level must compare as equal.
mid_price = prices.mid_price


def valid_price(x: float) -> bool:
    """A usable trade price or quote side: finite and positive."""
    return 0.0 < x < math.inf


def clean_output(values: tuple[float, ...] | None, index: int) -> float | None:
    """Output ``index`` of an indicator value tuple; unknown if absent or not finite."""
    if values is None or index >= len(values):
        return None
    v = values[index]
    if v is None or not math.isfinite(v):
        return None
    return float(v)


def _inside(s: Sample) -> bool:
    a, b = s[1], s[2]
    if a > b:
        a, b = b, a
    return a <= s[0] <= b


def holds(op: Operator, s: Sample) -> bool:
    """The operator's state predicate: the level's truth, or the state whose rising edge
    the edge operator detects (crossingUp: left > right, crossingDown: left < right,
    enteringChannel: inside, exitingChannel: outside). Not defined for ``crossing``."""
    if op is _GT or op is _UP:
        return s[0] > s[1]
    if op is _LT or op is _DOWN:
        return s[0] < s[1]
    if op is _INSIDE or op is _ENTER:
        return _inside(s)
    if op is _OUTSIDE or op is _EXIT:
        return not _inside(s)
    if op is _MUP:
        return s[0] >= s[1]
    if op is _MDOWN:
        return s[0] <= s[1]
    raise ValueError(f"{op} has no state predicate")


def crossed(op: Operator, prev: Sample, cur: Sample) -> bool:
    """Whether the edge operator ``op`` happened between two observations."""
    if op is _CROSS:
        return (not prev[0] > prev[1] and cur[0] > cur[1]) or (
            not prev[0] < prev[1] and cur[0] < cur[1]
        )
    return not holds(op, prev) and holds(op, cur)


def window_reference(op: Operator, closes: Iterable[float | None]) -> float | None:
    """movingUp: the lowest known close; movingDown: the highest; None if none known."""
    known = [v for v in closes if v is not None]
    if not known:
        return None
    return min(known) if op is _MUP else max(known)


def moving_threshold(op: Operator, move: Movement, ref: float | None) -> float | None:
    """The level the left side must reach (movingUp: >=, movingDown: <=)."""
    if ref is None:
        return None
    if move.percent:
        if ref == 0.0:
            return None
        delta = abs(ref) * move.by / 100.0
    else:
        delta = move.by
    return ref + delta if op is _MUP else ref - delta


def condition_values(op: Operator, cur: Sample, prev: Sample | None) -> ConditionValues:
    """What a firing reports for one condition (see ``ConditionValues``)."""
    if op is _MUP or op is _MDOWN:
        return ConditionValues(cur[0], cur[2])
    if len(cur) == 3:
        if prev is None:
            return ConditionValues(cur[0], cur[1], cur[2])
        return ConditionValues(cur[0], cur[1], cur[2], prev[0], prev[1], prev[2])
    if prev is None:
        return ConditionValues(cur[0], cur[1])
    return ConditionValues(cur[0], cur[1], None, prev[0], prev[1])
