"""Positions and the account from fills: worked examples, and properties on random fill
sequences (fold == incremental, the P&L identity, cash conservation)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.trading.account import Account, fold_account
from server.trading.events import Fill
from server.trading.model import Side
from server.trading.money import notional
from server.trading.positions import Position, PositionSide, apply_fill
from tests.server.trading.helpers import fill

D = Decimal
START = D("100000")


def test_long_then_partial_close_then_flip_to_short() -> None:
    p = Position("AMZN")
    p, r = apply_fill(p, Side.BUY, D(3), D("10.00"))
    assert (p.qty, p.cost_basis, p.avg_entry_price, r) == (D(3), D("30.00"), D("10.00"), None)
    p, r = apply_fill(p, Side.SELL, D(1), D("12.00"))
    assert r is not None and (r.qty, r.pnl, r.entry_price, r.exit_price) == (
        D(1),
        D("2.00"),
        D("10.00"),
        D("12.00"),
    )
    assert (p.qty, p.cost_basis, p.realized_pnl) == (D(2), D("20.00"), D("2.00"))
    # Sell 5 at 12: closes 2 (+4.00), opens 3 short at 12.
    p, r = apply_fill(p, Side.SELL, D(5), D("12.00"))
    assert r is not None and (r.qty, r.pnl) == (D(2), D("4.00"))
    assert (p.qty, p.cost_basis, p.side, p.avg_entry_price) == (
        D(-3),
        D("-36.00"),
        PositionSide.SHORT,
        D("12.00"),
    )
    assert p.unrealized_pnl(D("11.00")) == D("3.00")  # short gains when the price falls
    assert p.market_value(D("11.00")) == D("-33.00")
    # Cover at 13: loses 1.00 a share.
    p, r = apply_fill(p, Side.BUY, D(3), D("13.00"))
    assert r is not None and r.pnl == D("-3.00")
    assert (p.qty, p.cost_basis, p.realized_pnl, p.side) == (D(0), D(0), D("3.00"), None)
    assert p.avg_entry_price is None


def test_proportional_cost_removal_is_exact_over_a_round_trip() -> None:
    # 3 shares for $10.01 in total: thirds are not whole cents.
    p, _ = apply_fill(Position("X"), Side.BUY, D(1), D("3.33"))
    p, _ = apply_fill(p, Side.BUY, D(2), D("3.34"))
    assert p.cost_basis == D("10.01")
    total = D(0)
    for _ in range(3):
        p, r = apply_fill(p, Side.SELL, D(1), D("4.00"))
        assert r is not None
        total += r.pnl
    assert total == D("12.00") - D("10.01") and p.cost_basis == 0


def test_fractional_fills_book_cents() -> None:
    account = Account.open(D(1000))
    account.apply(fill("a", 1, "0.123456789", "100.01"))
    assert account.cash == D(1000) - D("12.35")
    assert account.position("AMZN").qty == D("0.123456789")


def test_buying_power_cash_and_margin() -> None:
    account = Account.open(D(10_000))
    account.apply(fill("a", 1, "50", "100"))  # $5,000 long
    cash = account.value({"AMZN": D("100")}, D(1))
    assert cash.buying_power == D(5_000) and cash.equity == D(10_000)
    margin = account.value({"AMZN": D("100")}, D(2))
    assert margin.buying_power == D(15_000)  # 2 x 10,000 - 5,000
    # Underwater: no buying power, never negative.
    falling = account.value({"AMZN": D("1")}, D(2))
    assert falling.buying_power == D("10050") and falling.equity == D("5050")
    short = Account.open(D(10_000))
    short.apply(fill("s", 1, "100", "100", side=Side.SELL))
    v = short.value({"AMZN": D("150")}, D(2))
    assert v.short_market_value == D(-15_000) and v.equity == D(5_000)
    assert v.gross_exposure == D(15_000) and v.buying_power == D(0)


def test_positions_without_a_mark_use_the_last_fill_price() -> None:
    account = Account.open(D(1000))
    account.apply(fill("a", 1, "2", "100"))
    account.apply(fill("a", 2, "1", "110"))
    v = account.value({})
    assert v.positions[0].mark == D("110") and v.unrealized_pnl == D("20.00")


def test_a_fill_is_booked_once() -> None:
    account = Account.open(D(1000))
    f = fill("a", 1, "1", "100")
    account.apply(f)
    with pytest.raises(ValueError, match="already booked"):
        account.apply(f)
    assert account.cash == D(900)


def test_closed_positions_leave_the_book_but_not_the_totals() -> None:
    account = fold_account(
        D(1000), [fill("a", 1, "2", "100"), fill("b", 1, "2", "105", side=Side.SELL)]
    )
    assert account.positions == {} and account.realized_pnl == D("10.00")
    assert account.cash == D("1010.00") and account.fill_count == 2


# --- properties on random fills -----------------------------------------------------------

SYMBOLS = ("AAA", "BBB")


@st.composite
def fills(draw: st.DrawFn) -> list[Fill]:
    n = draw(st.integers(min_value=1, max_value=40))
    out = []
    for i in range(n):
        whole = draw(st.booleans())
        qty = (
            D(draw(st.integers(min_value=1, max_value=500)))
            if whole
            else D(draw(st.integers(min_value=1, max_value=10**10))) / D(10**9)
        )
        cents = draw(st.integers(min_value=1, max_value=50_000))
        price = D(cents) / 100 if cents >= 100 else D(draw(st.integers(1, 9999))) / 10_000
        out.append(
            Fill(
                id=f"f{i}",
                order_id=f"o{i}",
                symbol=draw(st.sampled_from(SYMBOLS)),
                side=draw(st.sampled_from([Side.BUY, Side.SELL])),
                qty=qty,
                price=price,
                commission=D(draw(st.integers(0, 500))) / 100,
                time_ms=i,
            )
        )
    return out


marks = st.fixed_dictionaries(
    {s: st.integers(min_value=1, max_value=60_000).map(lambda c: D(c) / 100) for s in SYMBOLS}
)


@settings(max_examples=150, deadline=None)
@given(fills(), marks, st.integers(min_value=0, max_value=40))
def test_fold_equals_incremental_and_rebuild_from_any_prefix(
    seq: list[Fill], prices: dict[str, Decimal], cut: int
) -> None:
    live = Account.open(START)
    for f in seq:
        live.apply(f)
        live.value(prices)  # reading between fills changes nothing
    rebuilt = fold_account(START, seq)
    resumed = fold_account(START, seq[:cut])
    for f in seq[cut:]:
        resumed.apply(f)
    for other in (rebuilt, resumed):
        assert other.cash == live.cash
        assert other.positions == live.positions
        assert other.realized_pnl == live.realized_pnl
        assert other.commissions == live.commissions
        assert other.value(prices) == live.value(prices)


@settings(max_examples=150, deadline=None)
@given(fills(), marks)
def test_pnl_identity_and_cash_conservation(seq: list[Fill], prices: dict[str, Decimal]) -> None:
    account = fold_account(START, seq)
    v = account.value(prices)
    # Equity moves by exactly realised + unrealised - commissions, to the cent.
    assert v.equity - START == v.realized_pnl + v.unrealized_pnl - v.commissions
    # Cash is the start, minus what was bought, plus what was sold, minus fees.
    flows = sum((notional(f.qty, f.price) * f.side.sign for f in seq), D(0))
    assert account.cash == START - flows - sum((f.commission for f in seq), D(0))
    # Positions hold exactly the net quantity traded per symbol.
    for symbol in SYMBOLS:
        net = sum((f.qty * f.side.sign for f in seq if f.symbol == symbol), D(0))
        assert account.position(symbol).qty == net
    # Everything is in cents.
    for amount in (account.cash, v.equity, v.realized_pnl, v.unrealized_pnl):
        assert amount == amount.quantize(D("0.01"))


@settings(max_examples=100, deadline=None)
@given(fills())
def test_flattening_realises_everything(seq: list[Fill]) -> None:
    account = fold_account(START, seq)
    closing = []
    for i, (symbol, p) in enumerate(sorted(account.positions.items())):
        side = Side.SELL if p.qty > 0 else Side.BUY
        closing.append(Fill(f"c{i}", f"c{i}", symbol, side, abs(p.qty), D("100"), D(0), 10**6))
    for f in closing:
        account.apply(f)
    assert account.positions == {}
    assert account.cash - START == account.realized_pnl - account.commissions
