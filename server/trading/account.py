"""The account, from fills alone: cash, positions, realised P&L, commissions; and its
valuation at marks (equity, exposure, buying power).

``Account.apply`` is the one way a fill changes the account, whether it arrives live
or from the ledger at start-up: ``fold_account(starting_cash, fills)`` is ``apply``
over the list, so a rebuilt account equals the live one by construction, and a test
checks it does on random fill sequences (including rebuilding from any prefix and
applying the rest).

Buying power (``Valuation.buying_power``)::

    max(0, multiplier * equity - gross exposure)

With multiplier 1 (a cash account, which may not sell short) this is the cash; with 2
it is Reg T's initial margin: positions worth up to twice the equity. Maintenance
margin, margin calls, day-trading buying power and settlement (T+1) are not modelled;
``docs/trading.md`` says why. Orders that are open reserve buying power too: that is
the risk check's business (``server.trading.risk``), which knows them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from server.trading.events import Fill
from server.trading.money import ZERO, notional
from server.trading.positions import Position, Realization, book_fill


@dataclass(frozen=True, slots=True)
class PositionValue:
    position: Position
    mark: Decimal
    market_value: Decimal
    unrealized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class Valuation:
    cash: Decimal
    long_market_value: Decimal
    #: Negative (or zero): what buying back the shorts would cost.
    short_market_value: Decimal
    equity: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    commissions: Decimal
    buying_power: Decimal
    multiplier: Decimal
    positions: tuple[PositionValue, ...]

    @property
    def gross_exposure(self) -> Decimal:
        return self.long_market_value - self.short_market_value


@dataclass(slots=True)
class Account:
    starting_cash: Decimal
    cash: Decimal
    #: Open positions only (a position closed to zero is removed; its realised P&L stays
    #: in the account's totals).
    positions: dict[str, Position] = field(default_factory=dict)
    #: Last fill price per symbol: the mark of last resort.
    last_prices: dict[str, Decimal] = field(default_factory=dict)
    realized_pnl: Decimal = ZERO
    commissions: Decimal = ZERO
    fill_count: int = 0
    fill_ids: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, starting_cash: Decimal) -> Account:
        return cls(starting_cash=starting_cash, cash=starting_cash)

    def position(self, symbol: str) -> Position:
        """The open position in ``symbol`` (a flat one if there is none)."""
        return self.positions.get(symbol) or Position(symbol)

    def apply(self, fill: Fill) -> Realization | None:
        """Book one fill; returns what it realised. A fill id seen before is refused."""
        if fill.id in self.fill_ids:
            raise ValueError(f"fill {fill.id} was already booked")
        before = self.position(fill.symbol)
        after, realization = book_fill(before, fill)
        # Cash moves by the fill's booked value (the same cents the position split
        # between closing and opening) and its fees.
        self.cash -= notional(fill.qty, fill.price) * fill.side.sign + fill.commission
        self.realized_pnl += after.realized_pnl - before.realized_pnl
        self.commissions += fill.commission
        if after.qty:
            self.positions[fill.symbol] = after
        else:
            self.positions.pop(fill.symbol, None)
        self.last_prices[fill.symbol] = fill.price
        self.fill_count += 1
        self.fill_ids.add(fill.id)
        return realization

    def mark_of(self, symbol: str, marks: Mapping[str, Decimal]) -> Decimal:
        mark = marks.get(symbol)
        return mark if mark is not None else self.last_prices[symbol]

    def value(self, marks: Mapping[str, Decimal], multiplier: Decimal = Decimal(1)) -> Valuation:
        """The account at ``marks`` (last trade per symbol; a symbol without a mark is
        valued at its last fill price)."""
        values = []
        long_mv = short_mv = unrealized = ZERO
        for symbol in sorted(self.positions):
            p = self.positions[symbol]
            mark = self.mark_of(symbol, marks)
            mv = p.market_value(mark)
            upnl = mv - p.cost_basis
            values.append(PositionValue(p, mark, mv, upnl))
            if mv > 0:
                long_mv += mv
            else:
                short_mv += mv
            unrealized += upnl
        equity = self.cash + long_mv + short_mv
        gross = long_mv - short_mv
        buying_power = max(ZERO, multiplier * equity - gross)
        return Valuation(
            cash=self.cash,
            long_market_value=long_mv,
            short_market_value=short_mv,
            equity=equity,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=unrealized,
            commissions=self.commissions,
            buying_power=buying_power,
            multiplier=multiplier,
            positions=tuple(values),
        )


def fold_account(starting_cash: Decimal, fills: Iterable[Fill]) -> Account:
    """The account after ``fills`` in order: the ledger rebuild."""
    account = Account.open(starting_cash)
    for fill in fills:
        account.apply(fill)
    return account
