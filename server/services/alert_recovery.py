"""After a restart: the window in which no alert was evaluated, re-evaluated from history
where history has it, otherwise recorded as a GAP in each alert's history.

Every committed batch of firings carries the per-symbol watermark (``delivery.firings``):
the exchange time up to which every evaluation of that symbol's alerts is durable. At
start-up the alerts are restored with their stored firing state and, per symbol, the
window runs from that watermark to the first event evaluated after the restart. For
each armed alert of the symbol, when its first event arrives:

* **Re-evaluated** when the history provider keeps prints (Polygon's ``/v3/trades``)
  and the alert reads only the last price (``LAST`` against constants or ``LAST``,
  any tick trigger mode): a separate engine, restored with the alert's stored state,
  is fed the window's prints that may set the last price, in time order; its firings
  are delivered like live ones. Their dedup keys are the ones the live engine would
  have used, so a firing that was durable after all is stored once. As after any
  arming, the first print is an edge condition's baseline.
* Otherwise (no prints in the history, quotes or indicators involved, bar-close
  modes, a history failure) a **GAP** event is stored and published on the owner's
  ``alertEvents``: "not evaluated from ``from`` to ``to``", with the reason.

What this does not cover: a late print older than the watermark whose firing was not
yet durable at the crash (the window starts at the watermark).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable

from server.alerts import Alert, AlertEngine, FireState, PriceSource, TriggerMode
from server.alerts.model import Channel, Condition, Fired, Movement, OutputResolver
from server.delivery.firings import AlertDelivery, Firing
from server.errors import TickgraphError
from server.history.provider import HistoryProvider
from streams.conditions import ALL, LAST, flags_for

log = logging.getLogger(__name__)

FiringOf = Callable[[Fired], Firing]


def re_evaluable(alert: Alert) -> bool:
    """Whether the window's prints alone decide the alert: every operand is the last
    price or a constant, and it is evaluated on events (not at bar closes)."""
    if alert.trigger.mode is TriggerMode.ONCE_PER_BAR_CLOSE:
        return False
    return all(_price_only(c) for c in alert.conditions)


def _price_only(c: Condition) -> bool:
    if c.left is not PriceSource.LAST:
        return False
    r = c.right
    if isinstance(r, float):
        return True
    if isinstance(r, Movement):
        return False
    if isinstance(r, Channel):
        return all(isinstance(b, float) or b is PriceSource.LAST for b in (r.lower, r.upper))
    return r is PriceSource.LAST


def gap_firing(alert: Alert, from_ms: int, to_ms: int, reason: str) -> Firing:
    return Firing(
        alert_id=uuid.UUID(alert.id),
        owner=alert.owner,
        symbol=alert.symbol,
        dedup_key=f"gap:{from_ms}:{to_ms}",
        fired_at_ms=to_ms,
        payload={"kind": "gap", "fromMs": from_ms, "toMs": to_ms, "reason": reason},
        done=False,
        kind="gap",
    )


class AlertRecovery:
    def __init__(
        self,
        history: HistoryProvider,
        delivery: AlertDelivery,
        outputs: OutputResolver,
        firing_of: FiringOf,
    ) -> None:
        self._history = history
        self._delivery = delivery
        self._outputs = outputs
        self._firing_of = firing_of
        self._pending: dict[str, tuple[int, list[tuple[Alert, FireState]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Counters: alerts re-evaluated, firings recovered, GAPs recorded.
        self.re_evaluated = 0
        self.recovered = 0
        self.gaps = 0

    def arm(
        self, restored: Iterable[tuple[Alert, FireState]], watermarks: dict[str, int]
    ) -> dict[str, int]:
        """Remember the restored alerts of every symbol with a watermark; returns the
        watermarks to watch (symbol -> the last durable evaluation)."""
        for alert, state in restored:
            w = watermarks.get(alert.symbol)
            if w is None:
                continue  # never evaluated before: nothing was missed
            self._pending.setdefault(alert.symbol, (w, []))[1].append((alert, state))
        return {s: w for s, (w, _) in self._pending.items()}

    def on_resume(self, symbol: str, first_ms: int) -> None:
        """The first event of ``symbol`` since the restart was evaluated at ``first_ms``."""
        pending = self._pending.pop(symbol, None)
        if pending is None:
            return
        watermark, alerts = pending
        if first_ms <= watermark:
            return  # the feed went back in time (a replay started over): nothing missed
        task = asyncio.get_running_loop().create_task(
            self._recover(symbol, watermark, first_ms, alerts), name=f"recover {symbol}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every scheduled recovery has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _recover(
        self, symbol: str, from_ms: int, to_ms: int, alerts: list[tuple[Alert, FireState]]
    ) -> None:
        try:
            await self._run(symbol, from_ms, to_ms, alerts)
        except Exception:
            log.exception("recovery of %s's alerts failed; recording GAPs", symbol)
            for alert, _ in alerts:
                self._gap(alert, from_ms, to_ms, "recovery failed")

    async def _run(
        self, symbol: str, from_ms: int, to_ms: int, alerts: list[tuple[Alert, FireState]]
    ) -> None:
        candidates = [(a, s) for a, s in alerts if re_evaluable(a)]
        rest = [a for a, _ in alerts if not re_evaluable(a)]
        reason = "the history has no prints for this window"
        prints = None
        if candidates:
            try:
                prints = await self._history.trades(symbol, from_ms, to_ms)
            except TickgraphError as exc:
                reason = f"the history of prints failed: {exc}"
        if prints is None:
            rest.extend(a for a, _ in candidates)
            candidates = []
        for alert in rest:
            why = reason if re_evaluable(alert) else "the alert needs quotes, bars or indicators"
            self._gap(alert, from_ms, to_ms, why)
        if not candidates or prints is None:
            return
        shadow = AlertEngine(outputs=self._outputs)
        for alert, state in candidates:
            shadow.restore(alert, state)
        fired = 0
        for t in prints:
            flags = (flags_for(t.c) if t.c else ALL) if t.s else 0
            if flags & LAST and from_ms <= t.t < to_ms:
                for f in shadow.on_trade(symbol, t.p, t.t):
                    self._delivery.submit(self._firing_of(f))
                    fired += 1
        self.re_evaluated += len(candidates)
        self.recovered += fired
        log.info(
            "re-evaluated %d alerts of %s over %d prints from %d to %d: %d firings",
            len(candidates),
            symbol,
            len(prints),
            from_ms,
            to_ms,
            fired,
        )

    def _gap(self, alert: Alert, from_ms: int, to_ms: int, reason: str) -> None:
        self.gaps += 1
        self._delivery.submit(gap_firing(alert, from_ms, to_ms, reason))
        log.warning(
            "alert %s (%s) not evaluated from %d to %d: %s",
            alert.id,
            alert.symbol,
            from_ms,
            to_ms,
            reason,
        )
