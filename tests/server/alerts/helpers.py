"""Shared helpers for the alert tests: definitions in a line, both engines, series."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from server.alerts import Alert, AlertEngine, Fired, validate
from server.alerts.naive import NaiveEngine
from server.market.timeframes import Timeframe

# 2012-06-21 09:30:00 New York: a minute (and hour) boundary.
T0 = 1340285400000
MIN = 60_000

#: Both implementations; semantics tests run against each.
ENGINES: list[type[AlertEngine] | type[NaiveEngine]] = [AlertEngine, NaiveEngine]
Engine = AlertEngine | NaiveEngine


def alert(
    *conditions: dict[str, Any],
    trigger: dict[str, Any] | None = None,
    symbol: str = "AMZN",
    id: str = "a1",
    owner: str = "alice",
    now_ms: int = 0,
    **extra: Any,
) -> Alert:
    d: dict[str, Any] = {"symbol": symbol, "conditions": list(conditions), **extra}
    if trigger is not None:
        d["trigger"] = trigger
    return validate(d, alert_id=id, owner=owner, now_ms=now_ms)


def cond(left: Any, op: str, **right: Any) -> dict[str, Any]:
    return {"left": left, "op": op, **right}


def ind(key: str, tf: str = "1m", output: str = "value") -> dict[str, str]:
    return {"indicator": key, "timeframe": tf, "output": output}


def trades(
    engine: Engine, prices: Sequence[float], *, t0: int = T0, step: int = 1000, symbol: str = "AMZN"
) -> list[list[Fired]]:
    """Feed trades one ``step`` apart; the firings of each."""
    return [engine.on_trade(symbol, p, t0 + i * step) for i, p in enumerate(prices)]


def fired_at(results: Iterable[list[Fired]]) -> list[int]:
    """Indexes of the events that fired something."""
    return [i for i, r in enumerate(results) if r]


def keys(results: Iterable[list[Fired]]) -> list[str]:
    return [f.key for r in results for f in r]


def tf(name: str) -> Timeframe:
    return Timeframe(name)
