"""The simulated market: deterministic, and plausible enough to stand in for Polygon."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import pytest

from streams.events import Quote, Trade
from streams.polygon_protocol import check_event
from streams.simulated_market import (
    COND_ODD_LOT,
    QUOTING_EXCHANGES,
    TRADE_EXCHANGES,
    SimulatedMarket,
    start_price,
)

SYMBOLS = ("AAPL", "MSFT", "BRK.B", "SPY")
T0 = 1_750_000_000_000


@dataclass
class Run:
    delays: list[float] = field(default_factory=list)
    frames: list[list[Trade | Quote]] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)

    @property
    def events(self) -> list[Trade | Quote]:
        return [ev for f in self.frames for ev in f]


def drive(market: SimulatedMarket, frames: int) -> Run:
    """What the I/O layer does: wait next_delay(), then frame(now), with a fake clock."""
    run, now_s = Run(), 0.0
    for _ in range(frames):
        delay = market.next_delay()
        now_s += delay
        now_ms = T0 + int(now_s * 1000)
        run.delays.append(delay)
        run.stamps.append(now_ms)
        run.frames.append(market.frame(now_ms))
    return run


@pytest.fixture(scope="module")
def run() -> Run:
    return drive(SimulatedMarket(SYMBOLS, seed=42, rate_per_symbol=50.0), 20_000)


def _on_cent(price: float) -> bool:
    return abs(price * 100 - round(price * 100)) < 1e-6


def test_same_seed_same_market_other_seed_other_market() -> None:
    a = drive(SimulatedMarket(SYMBOLS, seed=7), 2_000)
    b = drive(SimulatedMarket(SYMBOLS, seed=7), 2_000)
    c = drive(SimulatedMarket(SYMBOLS, seed=8), 2_000)
    assert a.delays == b.delays and a.frames == b.frames
    assert a.frames != c.frames


def test_start_price_depends_on_the_symbol_only() -> None:
    prices = [start_price(f"S{i}") for i in range(2_000)]
    assert all(20.0 <= p <= 500.0 for p in prices)
    assert len(set(prices)) > 1_500  # spread out, not a handful of values
    assert start_price("AAPL") == start_price("AAPL")
    first = {ev.sym: ev for ev in drive(SimulatedMarket(["NVDA"], seed=1), 5).events}
    other = {ev.sym: ev for ev in drive(SimulatedMarket(["NVDA"], seed=2), 5).events}
    for ev in (first["NVDA"], other["NVDA"]):
        price = ev.p if isinstance(ev, Trade) else ev.bp
        assert abs(price - start_price("NVDA")) / start_price("NVDA") < 0.01


def test_every_event_passes_the_feed_checks(run: Run) -> None:
    assert len(run.events) > 20_000
    assert all(check_event(ev) is None for ev in run.events)


def test_quotes_are_sound(run: Run) -> None:
    quotes = [ev for ev in run.events if isinstance(ev, Quote)]
    assert quotes
    for q in quotes:
        assert 0 < q.bp < q.ap
        assert _on_cent(q.bp) and _on_cent(q.ap)
        assert 1 <= round((q.ap - q.bp) * 100) <= 10  # a few cent ticks
        assert q.bs > 0 and q.ask_size > 0
        assert isinstance(q.bs, int) and isinstance(q.ask_size, int)
        assert q.bx in QUOTING_EXCHANGES and q.ax in QUOTING_EXCHANGES
    # Sizes are in shares, mostly round lots.
    round_lots = sum(q.bs % 100 == 0 for q in quotes) / len(quotes)
    assert round_lots > 0.8


def test_trades_print_inside_the_prevailing_quote(run: Run) -> None:
    last_quote: dict[str, Quote] = {}
    trades = 0
    for ev in run.events:
        if isinstance(ev, Quote):
            last_quote[ev.sym] = ev
            continue
        trades += 1
        assert ev.s > 0 and isinstance(ev.s, int)
        assert _on_cent(ev.p)
        assert ev.x in TRADE_EXCHANGES
        assert ev.i.isdigit()
        assert (COND_ODD_LOT in ev.c) == (ev.s < 100)
        quote = last_quote.get(ev.sym)
        if quote is not None:
            assert quote.bp - 1e-9 <= ev.p <= quote.ap + 1e-9
    assert trades > 2_000
    sizes = [ev.s for ev in run.events if isinstance(ev, Trade)]
    odd = sum(s < 100 for s in sizes) / len(sizes)
    assert 0.1 < odd < 0.5  # odd lots sometimes, round lots mostly


def test_sequence_and_ids_increase_per_symbol_tape_is_fixed(run: Run) -> None:
    last_q: Counter[str] = Counter()
    last_id: Counter[str] = Counter()
    gaps = 0
    tapes: dict[str, set[int]] = {}
    for ev in run.events:
        assert ev.q > last_q[ev.sym]
        gaps += ev.q > last_q[ev.sym] + 1 and last_q[ev.sym] > 0
        last_q[ev.sym] = ev.q
        tapes.setdefault(ev.sym, set()).add(ev.z)
        if isinstance(ev, Trade):
            assert int(ev.i) > last_id[ev.sym]
            last_id[ev.sym] = int(ev.i)
    assert gaps > 0  # not contiguous, like the real feed
    assert all(len(z) == 1 and z <= {1, 2, 3} for z in tapes.values())


def test_events_carry_the_callers_time(run: Run) -> None:
    for stamp, frame in zip(run.stamps, run.frames, strict=True):
        assert all(ev.t == stamp for ev in frame)


def test_bursts_and_flurries_happen(run: Run) -> None:
    sizes = Counter(len(f) for f in run.frames)
    bursts = sum(n for size, n in sizes.items() if size >= 5)
    assert 100 < bursts < 1_000  # about 2% of frames
    quick = sum(d < 0.005 for d in run.delays)
    assert quick > 500
    # Identical stamps on consecutive frames: several frames within one millisecond.
    assert sum(a == b for a, b in itertools.pairwise(run.stamps)) > 100


def test_event_rate_matches_the_request(run: Run) -> None:
    rate = len(run.events) / sum(run.delays) / len(SYMBOLS)
    assert 50.0 * 0.85 < rate < 50.0 * 1.15


def test_prices_wander_but_stay_plausible(run: Run) -> None:
    mids: dict[str, list[float]] = {}
    for ev in run.events:
        if isinstance(ev, Quote):
            mids.setdefault(ev.sym, []).append((ev.bp + ev.ap) / 2)
    for series in mids.values():
        assert len(set(series)) > 10  # it moves
        assert max(series) / min(series) < 1.5  # but not wildly over a few minutes


def test_symbols_come_and_go_at_run_time() -> None:
    market = SimulatedMarket(["AAPL"], seed=3)
    assert market.add_symbol("NEWCO") and not market.add_symbol("NEWCO")
    assert market.symbols == ("AAPL", "NEWCO") and "NEWCO" in market
    assert {ev.sym for ev in drive(market, 500).events} == {"AAPL", "NEWCO"}
    assert market.remove_symbol("AAPL") and not market.remove_symbol("AAPL")
    assert {ev.sym for ev in drive(market, 200).events} == {"NEWCO"}
    market.remove_symbol("NEWCO")
    assert market.frame(T0) == [] and market.next_delay() > 0


def test_frame_rate_scales_with_symbols() -> None:
    one = SimulatedMarket(["A"], rate_per_symbol=10.0)
    four = SimulatedMarket(["A", "B", "C", "D"], rate_per_symbol=10.0)
    assert four.frame_rate == pytest.approx(4 * one.frame_rate)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_rejects_a_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate_per_symbol"):
        SimulatedMarket(["AAPL"], rate_per_symbol=rate)
