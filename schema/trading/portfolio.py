"""Positions, the account, the equity curve and performance as GraphQL types.

Built from the domain's valuation (``Account.value(marks, multiplier)``) and
performance measures (``server.trading.performance``). Ratios follow one convention:
a field named ``...Percent`` is a percentage (``1.25`` is 1.25%); the others
(``timeWeightedReturn``, ``winRate``, ``Drawdown.depth``) are fractions (``0.0125``).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import strawberry

from schema.scalars import Timestamp
from schema.trading.enums import PositionSide
from schema.trading.orders import ms
from server.trading import account as domain_account
from server.trading import performance as domain_performance
from server.trading.money import CTX

HUNDRED = Decimal(100)
#: Percentages to a ten-thousandth of a percent.
PERCENT_QUANTUM = Decimal("0.0001")


def percent_of(part: Decimal, whole: Decimal) -> Decimal | None:
    """``part / |whole|`` as a percentage; ``None`` when ``whole`` is zero."""
    if not whole:
        return None
    ratio = CTX.divide(CTX.multiply(part, HUNDRED), abs(whole))
    return ratio.quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_EVEN, context=CTX)


def _ms_or_none(time_ms: int | None) -> Timestamp | None:
    return None if time_ms is None else ms(time_ms)


@strawberry.type(
    description="An open position in one symbol, valued at its mark. Quantities and values "
    "are signed: negative for a short."
)
class Position:
    symbol: str = strawberry.field(description="The symbol held.")
    side: PositionSide | None = strawberry.field(
        description="LONG or SHORT; null for a position closed to zero."
    )
    qty: Decimal = strawberry.field(description="Shares held: negative for a short.")
    avg_entry_price: Decimal | None = strawberry.field(
        description="Cost per share of what is open; null when flat."
    )
    cost_basis: Decimal = strawberry.field(
        description="What the open shares cost (negative for a short: what selling them "
        "brought in), in dollars and cents."
    )
    mark: Decimal = strawberry.field(
        description="The price it is valued at: the last trade, or the last fill price "
        "when no trade is known."
    )
    market_value: Decimal = strawberry.field(
        description="qty × mark, to the cent (negative for a short)."
    )
    unrealized_pnl: Decimal = strawberry.field(description="marketValue − costBasis.")
    unrealized_pnl_percent: Decimal | None = strawberry.field(
        description="unrealizedPnl as a percentage of |costBasis| (1.25 = 1.25%)."
    )
    realized_pnl: Decimal = strawberry.field(
        description="P&L realised by the fills that reduced this position since it was "
        "opened (before commissions)."
    )
    commissions: Decimal = strawberry.field(
        description="Fees of this position's fills since it was opened."
    )
    updated_at: Timestamp = strawberry.field(description="The time of its last fill.")

    @classmethod
    def of(cls, value: domain_account.PositionValue) -> Position:
        p = value.position
        return cls(
            symbol=p.symbol,
            side=p.side,
            qty=p.qty,
            avg_entry_price=p.avg_entry_price,
            cost_basis=p.cost_basis,
            mark=value.mark,
            market_value=value.market_value,
            unrealized_pnl=value.unrealized_pnl,
            unrealized_pnl_percent=percent_of(value.unrealized_pnl, p.cost_basis),
            realized_pnl=p.realized_pnl,
            commissions=p.commissions,
            updated_at=ms(p.updated_ms),
        )


@strawberry.type(
    description="The trading account at current marks: cash, positions, equity, buying "
    "power and P&L, all from its fills. equity − startingCash = realizedPnl + "
    "unrealizedPnl − commissions, to the cent."
)
class Account:
    broker: str = strawberry.field(description='The broker that holds it, e.g. "paper".')
    starting_cash: Decimal = strawberry.field(description="Cash the account started with.")
    cash: Decimal = strawberry.field(
        description="Cash now: starting cash − bought + sold − fees (negative when borrowing "
        "on margin)."
    )
    equity: Decimal = strawberry.field(description="cash + longMarketValue + shortMarketValue.")
    long_market_value: Decimal = strawberry.field(
        description="Market value of the long positions (≥ 0)."
    )
    short_market_value: Decimal = strawberry.field(
        description="Market value of the short positions (≤ 0): what buying them back costs."
    )
    gross_exposure: Decimal = strawberry.field(description="longMarketValue − shortMarketValue.")
    buying_power: Decimal = strawberry.field(
        description="max(0, multiplier × equity − grossExposure), before what open orders reserve."
    )
    multiplier: Decimal = strawberry.field(
        description="1 for a cash account, 2 for Reg T margin (the tier's)."
    )
    realized_pnl: Decimal = strawberry.field(
        description="P&L realised by all fills, before commissions."
    )
    unrealized_pnl: Decimal = strawberry.field(
        description="P&L of the open positions at their marks."
    )
    commissions: Decimal = strawberry.field(description="Fees paid on all fills.")
    positions: list[Position] = strawberry.field(description="Open positions, by symbol.")

    @classmethod
    def of(
        cls, account: domain_account.Account, valuation: domain_account.Valuation, *, broker: str
    ) -> Account:
        """``valuation`` is ``account.value(marks, multiplier)``."""
        return cls(
            broker=broker,
            starting_cash=account.starting_cash,
            cash=valuation.cash,
            equity=valuation.equity,
            long_market_value=valuation.long_market_value,
            short_market_value=valuation.short_market_value,
            gross_exposure=valuation.gross_exposure,
            buying_power=valuation.buying_power,
            multiplier=valuation.multiplier,
            realized_pnl=valuation.realized_pnl,
            unrealized_pnl=valuation.unrealized_pnl,
            commissions=valuation.commissions,
            positions=[Position.of(p) for p in valuation.positions],
        )


@strawberry.type(description="The account's equity at one time.")
class EquityPoint:
    at: Timestamp = strawberry.field(description="When.")
    equity: Decimal = strawberry.field(description="Equity at that time, at the marks then.")

    @classmethod
    def of(cls, point: domain_performance.EquityPoint) -> EquityPoint:
        return cls(at=ms(point.time_ms), equity=point.equity)


@strawberry.type(description="The largest fall of the account's flow-adjusted equity from a peak.")
class Drawdown:
    depth: Decimal = strawberry.field(
        description="The fall from peak to trough as a fraction of the peak (0.05 = 5%); "
        "0 when equity never fell."
    )
    depth_percent: Decimal = strawberry.field(description="depth as a percentage (5 = 5%).")
    peak_at: Timestamp | None = strawberry.field(
        description="When the peak was; null when there was no fall."
    )
    trough_at: Timestamp | None = strawberry.field(
        description="When the trough was; null when there was no fall."
    )
    recovered_at: Timestamp | None = strawberry.field(
        description="When equity first got back to the peak; null if it has not."
    )

    @classmethod
    def of(cls, drawdown: domain_performance.Drawdown) -> Drawdown:
        return cls(
            depth=drawdown.fraction,
            depth_percent=drawdown.fraction.scaleb(2, CTX),
            peak_at=_ms_or_none(drawdown.peak_ms),
            trough_at=_ms_or_none(drawdown.trough_ms),
            recovered_at=_ms_or_none(drawdown.recovered_ms),
        )


@strawberry.type(
    description="How the account did over a period: returns from its equity curve, "
    "trade statistics from its closed round trips (a trade opens when a position leaves "
    "zero and closes when it returns there)."
)
class Performance:
    from_: Timestamp = strawberry.field(name="from", description="Start of the period.")
    to: Timestamp = strawberry.field(description="End of the period.")
    time_weighted_return: Decimal | None = strawberry.field(
        description="Time-weighted return as a fraction (0.0125 = 1.25%), net of deposits "
        "and withdrawals; null with fewer than two equity points."
    )
    max_drawdown: Drawdown | None = strawberry.field(
        description="The largest drawdown; null without equity points."
    )
    realized_pnl: Decimal = strawberry.field(
        description="P&L of the trades closed in the period, before commissions."
    )
    net_realized_pnl: Decimal = strawberry.field(
        description="realizedPnl less those trades' commissions."
    )
    trades: int = strawberry.field(description="Trades closed in the period.")
    wins: int = strawberry.field(description="Closed trades with a positive net P&L.")
    losses: int = strawberry.field(description="Closed trades with a negative net P&L.")
    win_rate: Decimal | None = strawberry.field(
        description="wins / trades as a fraction (a break-even trade is no win); null "
        "without trades."
    )

    @classmethod
    def of(cls, perf: domain_performance.Performance, *, from_ms: int, to_ms: int) -> Performance:
        return cls(
            from_=ms(from_ms),
            to=ms(to_ms),
            time_weighted_return=perf.time_weighted_return,
            max_drawdown=None if perf.max_drawdown is None else Drawdown.of(perf.max_drawdown),
            realized_pnl=perf.realized_pnl,
            net_realized_pnl=perf.net_realized_pnl,
            trades=perf.trades,
            wins=perf.wins,
            losses=perf.losses,
            win_rate=perf.win_rate,
        )


__all__ = ["Account", "Drawdown", "EquityPoint", "Performance", "Position", "percent_of"]
