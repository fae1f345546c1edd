"""A deterministic simulated US-equity market producing Polygon ``T`` and ``Q`` events.

Given a seed, the sequence of frames is fully determined by the sequence of calls
(``next_delay``, ``frame(now_ms)``, ``add_symbol``...). Nothing here reads a clock:
the I/O layer passes wall-clock time in, so tests can drive it with any clock.

The model is deliberately simple but keeps the invariants real consumers rely on:

* each symbol has a mid price doing a small multiplicative random walk with drift;
* quotes are on cent ticks, ``bid < ask`` always, a spread of a few ticks that is
  wider for dearer stocks, sizes in shares (mostly round lots);
* trades print at the bid, at the ask or at a cent in between, mostly round lots
  with odd lots (condition 37) sometimes, on real Polygon exchange ids;
* ``q`` strictly increases per symbol, with gaps as in the real feed;
* frames arrive as a Poisson process at the requested aggregate rate, with
  occasional bursts: many events in one millisecond, then a flurry of frames
  in quick succession, as around news or the open.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from streams.events import Quote, Trade

#: Polygon exchange ids of lit venues that quote: Nasdaq 12, NYSE 10, NYSE Arca 11,
#: Cboe EDGX 8 / EDGA 7 / BZX 19, IEX 15, MEMX 21, NYSE American 1, Nasdaq BX 2,
#: NYSE National 3, NYSE Chicago 9. FINRA (4) reports off-exchange prints, never quotes.
QUOTING_EXCHANGES: Final = (12, 10, 11, 8, 7, 15, 19, 21, 1, 2, 3, 9)
#: Where trades print, weighted: off-exchange (FINRA TRF, 4) is a large share today.
TRADE_EXCHANGES: Final = (4, 4, 4, 12, 12, 11, 10, 8, 7, 15, 19, 21)

COND_INTERMARKET_SWEEP: Final = 14
COND_ODD_LOT: Final = 37
COND_TRADE_THRU_EXEMPT: Final = 41

MIN_PRICE: Final = 1.0
TICK: Final = 0.01

_TRADE_PROB: Final = 0.25  # share of ordinary frames that carry a trade (plus its quote)
_BURST_PROB: Final = 0.02  # share of frames that are a same-millisecond burst
_BURST_EVENTS: Final = (5, 25)  # events in a burst, inclusive
_FLURRY_FRAMES: Final = (3, 12)  # quick frames following a burst
_FLURRY_GAP_S: Final = 0.002  # mean gap between flurry frames
_IDLE_DELAY_S: Final = 0.1  # poll interval when there is no symbol at all
#: Mean events of an ordinary frame: a quote, or a trade and the quote it moved.
_MEAN_EVENTS_ORDINARY: Final = 1.0 + _TRADE_PROB
#: Mean events per exponential inter-arrival: the frame itself (ordinary or burst) plus,
#: after a burst, its flurry of ordinary frames. The frame rate is derived from this so
#: that bursts do not inflate the requested event rate.
_MEAN_EVENTS_PER_ARRIVAL: Final = (
    (1 - _BURST_PROB) * _MEAN_EVENTS_ORDINARY
    + _BURST_PROB * sum(_BURST_EVENTS) / 2
    + _BURST_PROB * sum(_FLURRY_FRAMES) / 2 * _MEAN_EVENTS_ORDINARY
)


def _digest(symbol: str) -> bytes:
    # hashlib rather than hash(): str hashes are salted per process.
    return hashlib.blake2b(symbol.encode(), digest_size=16).digest()


#: Round-number levels near where these traded in late 2026, so the default universe
#: looks familiar; every other symbol gets a stable made-up price.
FAMILIAR_PRICES: dict[str, float] = {
    "AAPL": 230.0,
    "MSFT": 420.0,
    "AMZN": 200.0,
    "GOOG": 170.0,
    "GOOGL": 170.0,
    "NVDA": 140.0,
    "TSLA": 250.0,
    "META": 560.0,
    "SPY": 580.0,
    "QQQ": 500.0,
}


def start_price(symbol: str) -> float:
    """A stable start price for any symbol: a familiar level for well-known tickers,
    otherwise 20..500, log-uniform so cheap stocks are common."""
    familiar = FAMILIAR_PRICES.get(symbol)
    if familiar is not None:
        return familiar
    u = int.from_bytes(_digest(symbol)[:8], "big") / 2**64
    return round(math.exp(math.log(20.0) + u * (math.log(500.0) - math.log(20.0))), 2)


def _tape(symbol: str) -> int:
    """Tape by (pretend) listing venue: C (3) Nasdaq, A (1) NYSE, B (2) Arca and others."""
    b = _digest(symbol)[8] % 20
    return 3 if b < 11 else 1 if b < 18 else 2


def _cents(price: float) -> float:
    return round(round(price / TICK) * TICK, 2)


@dataclass(slots=True)
class _Book:
    """Per-symbol state."""

    symbol: str
    mid: float
    drift: float  # per event, in log terms
    vol: float  # per event, in log terms
    tape: int
    q: int
    trade_id: int
    bid: float = 0.0
    ask: float = 0.0


class SimulatedMarket:
    """Generates frames of Polygon stock events for a changing set of symbols.

    ``rate_per_symbol`` is the mean number of events per second per symbol; the
    frame rate adapts when symbols are added or removed.
    """

    def __init__(
        self, symbols: Iterable[str] = (), seed: int | None = None, rate_per_symbol: float = 50.0
    ) -> None:
        if not rate_per_symbol > 0.0 or not math.isfinite(rate_per_symbol):
            raise ValueError(f"rate_per_symbol must be positive, got {rate_per_symbol!r}")
        self.seed = seed
        self.rate_per_symbol = rate_per_symbol
        self._rng = random.Random(seed)
        self._books: dict[str, _Book] = {}
        self._order: list[str] = []  # insertion order, for deterministic choices
        self._pending_burst = False
        self._flurry_left = 0
        for s in symbols:
            self.add_symbol(s)

    # --- symbols -----------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._order)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._books

    def add_symbol(self, symbol: str) -> bool:
        """Start quoting ``symbol``; ``False`` if it was already there."""
        if not symbol or symbol in self._books:
            return False
        d = _digest(symbol)
        # Per-symbol character from the name, not the RNG, so a symbol behaves the same
        # whenever it is added; its path still depends on the seed.
        # Per event: at 50 events/s a symbol sees ~1.2M events a session, so these give
        # a daily drift within about ±2% and a daily volatility of roughly 3-13%:
        # lively enough that prices visibly move, still plausible.
        drift = (d[9] / 255.0 - 0.5) * 4e-8
        vol = 3e-5 + d[10] / 255.0 * 9e-5
        book = _Book(
            symbol=symbol,
            mid=start_price(symbol),
            drift=drift,
            vol=vol,
            tape=_tape(symbol),
            q=1000 + d[11] * 37,
            trade_id=1 + int.from_bytes(d[12:15], "big"),
        )
        self._requote(book)
        self._books[symbol] = book
        self._order.append(symbol)
        return True

    def remove_symbol(self, symbol: str) -> bool:
        if self._books.pop(symbol, None) is None:
            return False
        self._order.remove(symbol)
        return True

    # --- pacing ------------------------------------------------------------------------

    @property
    def frame_rate(self) -> float:
        """Mean arrivals per second (flurry frames aside), for ``rate_per_symbol`` events/s."""
        return self.rate_per_symbol * len(self._order) / _MEAN_EVENTS_PER_ARRIVAL

    def next_delay(self) -> float:
        """Seconds to wait before the next ``frame()``: exponential, or short in a flurry."""
        if not self._order:
            return _IDLE_DELAY_S
        rng = self._rng
        if self._flurry_left > 0:
            self._flurry_left -= 1
            return rng.expovariate(1.0 / _FLURRY_GAP_S)
        self._pending_burst = rng.random() < _BURST_PROB
        if self._pending_burst:
            self._flurry_left = rng.randint(*_FLURRY_FRAMES)
        return rng.expovariate(self.frame_rate)

    # --- events ------------------------------------------------------------------------

    def frame(self, now_ms: int) -> list[Trade | Quote]:
        """The events of one frame, all stamped ``now_ms``; empty when there is no symbol."""
        if not self._order:
            return []
        if self._pending_burst:
            self._pending_burst = False
            return self._burst(now_ms)
        book = self._books[self._rng.choice(self._order)]
        return self._tick(book, now_ms, trade=self._rng.random() < _TRADE_PROB)

    def _burst(self, now_ms: int) -> list[Trade | Quote]:
        rng = self._rng
        # A burst hits a few symbols hard rather than everything a little.
        names = rng.sample(self._order, k=min(len(self._order), rng.randint(1, 3)))
        target = rng.randint(*_BURST_EVENTS)
        out: list[Trade | Quote] = []
        while len(out) < target:
            book = self._books[rng.choice(names)]
            out.extend(self._tick(book, now_ms, trade=rng.random() < 0.5))
        return out

    def _tick(self, book: _Book, now_ms: int, *, trade: bool) -> list[Trade | Quote]:
        self._walk(book)
        out: list[Trade | Quote] = []
        if trade:
            out.append(self._trade(book, now_ms))
        self._requote(book)
        out.append(self._quote(book, now_ms))
        return out

    def _walk(self, book: _Book) -> None:
        step = book.drift + book.vol * self._rng.gauss(0.0, 1.0)
        book.mid = max(MIN_PRICE, book.mid * math.exp(step))

    def _spread_ticks(self, mid: float) -> int:
        # Dearer stocks trade with wider cent spreads; mostly 1-3 ticks.
        base = 1 + int(mid // 150)
        return base + min(4, int(self._rng.expovariate(1.2)))

    def _requote(self, book: _Book) -> None:
        ticks = self._spread_ticks(book.mid)
        bid = _cents(book.mid - ticks * TICK / 2)
        bid = max(TICK, bid)
        book.bid = bid
        book.ask = round(bid + ticks * TICK, 2)

    def _next_q(self, book: _Book) -> int:
        # Not contiguous: the real q counts messages we are not subscribed to.
        book.q += self._rng.choice((1, 1, 1, 2, 3, 7))
        return book.q

    def _lot(self, *, odd_prob: float) -> int:
        rng = self._rng
        if rng.random() < odd_prob:
            return rng.randint(1, 99)
        return 100 * min(50, 1 + int(rng.expovariate(0.6)))

    def _trade(self, book: _Book, now_ms: int) -> Trade:
        rng = self._rng
        r = rng.random()
        if r < 0.4:
            price = book.bid
        elif r < 0.8:
            price = book.ask
        else:
            inside = round((book.ask - book.bid) / TICK)
            price = round(book.bid + rng.randint(0, inside) * TICK, 2)
        size = self._lot(odd_prob=0.3)
        conditions: list[int] = []
        if rng.random() < 0.05:
            conditions.append(COND_INTERMARKET_SWEEP)
        if size < 100:
            conditions.append(COND_ODD_LOT)
        if rng.random() < 0.02:
            conditions.append(COND_TRADE_THRU_EXEMPT)
        book.trade_id += rng.randint(1, 4)
        return Trade(
            sym=book.symbol,
            p=price,
            s=size,
            t=now_ms,
            q=self._next_q(book),
            x=rng.choice(TRADE_EXCHANGES),
            i=str(book.trade_id),
            z=book.tape,
            c=tuple(conditions),
        )

    def _quote(self, book: _Book, now_ms: int) -> Quote:
        rng = self._rng
        return Quote(
            sym=book.symbol,
            bp=book.bid,
            ap=book.ask,
            t=now_ms,
            bs=self._lot(odd_prob=0.05),
            ask_size=self._lot(odd_prob=0.05),
            bx=rng.choice(QUOTING_EXCHANGES),
            ax=rng.choice(QUOTING_EXCHANGES),
            c=0,
            q=self._next_q(book),
            z=book.tape,
        )


__all__ = [
    "QUOTING_EXCHANGES",
    "TRADE_EXCHANGES",
    "SimulatedMarket",
    "start_price",
]
