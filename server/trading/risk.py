"""Pre-trade risk checks: pure functions of the order, the account and the market.

``check_order`` runs them in this order and raises the first failure (each has its own
``extensions.code``, see ``server.trading.errors``):

1. ``SYMBOL_NOT_TRADABLE``: unknown to the server or halted (``MarketView.tradable``).
2. ``MARKET_CLOSED``: an IOC/FOK order outside its session, an OPG/CLS order past its
   auction's cutoff (``server.trading.timing``). Other orders outside their session
   are taken and held for it, as Alpaca does.
3. ``MARKET_DATA_UNAVAILABLE``: an order whose value needs a market price (market,
   trailing stop, a bracket with a market entry) and no trade or quote is known.
4. ``STOP_PRICE_WRONG_SIDE``: a buy stop at or below the last trade, a sell stop at or
   above it (the stop would trigger at once: that is a market order); the stop-loss
   leg of a bracket with a market entry, and an OCO's stop-loss, likewise.
   ``INVALID_BRACKET``: a market-entry bracket's take-profit on the wrong side of the
   market.
5. ``PRICE_OUT_OF_BAND``: a limit price more than ``price_band_percent`` from the last
   trade (from the quote's midpoint when no trade is known), unless ``confirm``.
6. ``MAX_ORDER_VALUE``: the order's estimated value above the tier's limit.
7. ``SHORT_NOT_ALLOWED``: a sell beyond the long position (less the shares already
   committed to open sell orders) in a cash account, or for fractional shares.
8. ``MAX_POSITION``: the position's value after the order (and the open orders on the
   same side) above the tier's limit.
9. ``INSUFFICIENT_BUYING_POWER``: the part of the order that opens or grows a position
   costs more than the buying power left after what the open orders reserve.

The estimate (``OrderEstimate``): a limit order at its limit price; a stop at its stop
price; a market order at the ask (buy) or bid (sell), else the last trade; a trailing
stop at the last trade moved by its trail; market, stop and trailing-stop estimates are
padded by ``market_buffer_percent`` because they may fill worse. A notional order is
worth its notional, its quantity estimated at the same price.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from server.limits.tiers import TierLimits
from server.trading.account import Account
from server.trading.calendar import NYSE, Calendar
from server.trading.errors import (
    InsufficientBuyingPower,
    InvalidBracket,
    MarketClosed,
    MarketDataUnavailable,
    MaxOrderValue,
    MaxPosition,
    PriceOutOfBand,
    ShortNotAllowed,
    StopPriceWrongSide,
    SymbolNotTradable,
)
from server.trading.model import OrderClass, OrderRequest, OrderSpec, OrderType, Side
from server.trading.money import CTX, ONE, ZERO, canonical_price, cents, floor_qty, round_price
from server.trading.timing import session_refusal

_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class MarketView:
    """What the service knows about the symbol right now."""

    symbol: str
    #: Known to the server and not halted.
    tradable: bool = True
    #: Why not, when not (``"unknown symbol"``, ``"halted"``).
    reason: str = ""
    last: Decimal | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None

    @property
    def reference(self) -> Decimal | None:
        """The last trade, else the quote's midpoint."""
        if self.last is not None:
            return self.last
        if self.bid is not None and self.ask is not None and self.bid > 0 and self.ask > 0:
            return canonical_price((self.bid + self.ask) / 2)
        return None


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """What an open order still commits: its remaining quantity (or notional) and the
    price it was estimated at."""

    symbol: str
    side: Side
    price: Decimal
    remaining_qty: Decimal | None = None
    remaining_notional: Decimal | None = None

    @property
    def value(self) -> Decimal:
        if self.remaining_notional is not None:
            return self.remaining_notional
        assert self.remaining_qty is not None
        return cents(CTX.multiply(self.remaining_qty, self.price))

    @property
    def qty(self) -> Decimal:
        if self.remaining_qty is not None:
            return self.remaining_qty
        assert self.remaining_notional is not None
        return floor_qty(CTX.divide(self.remaining_notional, self.price))


@dataclass(frozen=True, slots=True)
class RiskConfig:
    #: PRICE_OUT_OF_BAND beyond this distance from the last trade, in percent.
    price_band_percent: Decimal = Decimal(10)
    #: Padding of market/stop estimates, in percent.
    market_buffer_percent: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class RiskContext:
    account: Account
    #: Last trade per symbol (the account's marks).
    marks: Mapping[str, Decimal]
    open_orders: Sequence[OpenOrder]
    limits: TierLimits
    market: MarketView
    now_ms: int
    calendar: Calendar = NYSE
    config: RiskConfig = field(default_factory=RiskConfig)
    #: The user confirmed a price outside the band.
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class OrderEstimate:
    """What the checks valued the order at; the service keeps it as the order's
    reservation (``OpenOrder``)."""

    price: Decimal
    qty: Decimal
    value: Decimal

    def open_order(self, spec: OrderSpec) -> OpenOrder:
        return OpenOrder(spec.symbol, spec.side, self.price, spec.qty, spec.notional)


def _pad(price: Decimal, config: RiskConfig) -> Decimal:
    """``price`` raised by the buffer, up to the price increment: a wider reservation
    whichever the side."""
    return round_price(price * (ONE + config.market_buffer_percent / _HUNDRED), up=True)


def estimate(spec: OrderSpec, market: MarketView, config: RiskConfig) -> OrderEstimate:
    """The order's reference price, quantity and value (see the module docstring)."""
    price: Decimal | None
    if spec.type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        price = spec.limit_price
    elif spec.type is OrderType.STOP:
        price = spec.stop_price
    else:
        quote = market.ask if spec.side is Side.BUY else market.bid
        base = quote if quote is not None and quote > 0 else market.reference
        if base is None:
            raise MarketDataUnavailable(
                f"no trade or quote of {spec.symbol} yet: cannot value a {spec.type} order",
                symbol=spec.symbol,
            )
        if spec.type is OrderType.TRAILING_STOP:
            # The trail moves with the market: value it at the market, padded below.
            base = market.reference or base
        price = base
    assert price is not None
    if spec.type in (OrderType.MARKET, OrderType.STOP, OrderType.TRAILING_STOP):
        price = _pad(price, config)
    if spec.notional is not None:
        return OrderEstimate(price, floor_qty(CTX.divide(spec.notional, price)), spec.notional)
    assert spec.qty is not None
    return OrderEstimate(price, spec.qty, cents(CTX.multiply(spec.qty, price)))


def check_tradable(market: MarketView) -> None:
    if not market.tradable:
        raise SymbolNotTradable(
            f"{market.symbol} cannot be traded: {market.reason or 'not tradable'}",
            symbol=market.symbol,
            reason=market.reason or None,
        )


def check_session(spec: OrderSpec, calendar: Calendar, now_ms: int) -> None:
    why = session_refusal(spec, calendar, now_ms)
    if why is not None:
        session = calendar.next_session(now_ms)
        raise MarketClosed(why, nextOpen=session.open_ms, timeInForce=str(spec.time_in_force))


def _stop_side(stop: Decimal, side: Side, market: Decimal, field_name: str) -> None:
    if (stop <= market) if side is Side.BUY else (stop >= market):
        where = "above" if side is Side.BUY else "below"
        raise StopPriceWrongSide(
            f"a {side} stop must be {where} the market ({market}); {field_name} {stop} would "
            "trigger at once (use a market or limit order)",
            field=field_name,
            reason="WOULD_TRIGGER",
            marketPrice=market,
        )


def check_prices_vs_market(request: OrderRequest, market: MarketView) -> None:
    """Stops on the right side of the market; a market bracket's legs around it."""
    ref = market.reference
    entry = request.entry
    if ref is None:
        if request.order_class is OrderClass.BRACKET and entry.type is OrderType.MARKET:
            raise MarketDataUnavailable(
                f"no trade or quote of {entry.symbol} yet: cannot place a market bracket",
                symbol=entry.symbol,
            )
        return
    if entry.type in (OrderType.STOP, OrderType.STOP_LIMIT) and entry.stop_price is not None:
        _stop_side(entry.stop_price, entry.side, ref, "stopPrice")
    market_exits = request.order_class is OrderClass.OCO or (
        request.order_class in (OrderClass.BRACKET, OrderClass.OTO)
        and entry.type is OrderType.MARKET
    )
    if not market_exits:
        return
    exit_side = entry.side if request.order_class is OrderClass.OCO else entry.side.opposite
    if request.stop_loss is not None:
        _stop_side(request.stop_loss.stop_price, exit_side, ref, "stopLoss.stopPrice")
    tp = request.take_profit
    if tp is not None and request.order_class is not OrderClass.OCO:
        wrong = tp.limit_price <= ref if exit_side is Side.SELL else tp.limit_price >= ref
        if wrong:
            where = "above" if exit_side is Side.SELL else "below"
            raise InvalidBracket(
                f"takeProfit.limitPrice {tp.limit_price} must be {where} the market ({ref})",
                field="takeProfit.limitPrice",
                reason="TAKE_PROFIT_WRONG_SIDE",
                marketPrice=ref,
            )


def check_price_band(
    spec: OrderSpec, market: MarketView, config: RiskConfig, confirm: bool
) -> None:
    if spec.type is not OrderType.LIMIT or confirm:
        return
    assert spec.limit_price is not None
    ref = market.reference
    if ref is None:
        raise PriceOutOfBand(
            f"no trade of {spec.symbol} yet to compare limitPrice {spec.limit_price} with; "
            "set confirm to place it anyway",
            symbol=spec.symbol,
            limitPrice=spec.limit_price,
        )
    distance = abs(spec.limit_price - ref) / ref * _HUNDRED
    if distance > config.price_band_percent:
        raise PriceOutOfBand(
            f"limitPrice {spec.limit_price} is {distance:.1f}% from the last trade {ref} "
            f"(more than {config.price_band_percent}%); set confirm to place it anyway",
            limitPrice=spec.limit_price,
            lastPrice=ref,
            bandPercent=config.price_band_percent,
        )


def check_order_value(value: Decimal, limits: TierLimits) -> None:
    if value > limits.max_order_value:
        raise MaxOrderValue(
            f"the order is worth about ${value}; the {limits.name} tier allows "
            f"${limits.max_order_value} per order",
            value=value,
            limit=limits.max_order_value,
        )


def _committed(open_orders: Sequence[OpenOrder], symbol: str, side: Side) -> Decimal:
    return sum((o.qty for o in open_orders if o.symbol == symbol and o.side is side), ZERO)


def check_short(spec: OrderSpec, qty: Decimal, ctx: RiskContext) -> None:
    if spec.side is not Side.SELL:
        return
    held = ctx.account.position(spec.symbol).qty
    available = held - _committed(ctx.open_orders, spec.symbol, Side.SELL)
    if qty <= available:
        return
    if spec.fractional:
        raise ShortNotAllowed(
            f"fractional shares cannot be sold short: {available} {spec.symbol} available",
            available=available,
        )
    if ctx.limits.margin_multiplier <= ONE:
        raise ShortNotAllowed(
            f"a cash account cannot sell short: {max(available, ZERO)} {spec.symbol} available "
            "to sell",
            available=max(available, ZERO),
        )


def check_position(spec: OrderSpec, est: OrderEstimate, ctx: RiskContext) -> None:
    held = ctx.account.position(spec.symbol).qty
    pending = _committed(ctx.open_orders, spec.symbol, spec.side)
    after = held + (est.qty + pending) * spec.side.sign
    value = cents(abs(after) * est.price)
    limit = ctx.limits.max_position_value
    # Only a position that grows is refused: reducing an oversized one is always allowed.
    if value > limit and abs(after) > abs(held):
        raise MaxPosition(
            f"{spec.symbol} would be worth about ${value}; the {ctx.limits.name} tier allows "
            f"${limit} per position",
            value=value,
            limit=limit,
        )


def opening_value(side: Side, qty: Decimal, price: Decimal, held: Decimal) -> Decimal:
    """The value of the part of an order that opens or grows a position (what needs
    buying power); the part that closes the current position needs none."""
    closing = min(qty, max(ZERO, -held if side is Side.BUY else held))
    return cents((qty - closing) * price)


def check_buying_power(spec: OrderSpec, est: OrderEstimate, ctx: RiskContext) -> None:
    account = ctx.account
    valuation = account.value(ctx.marks, ctx.limits.margin_multiplier)
    reserved = sum(
        (
            opening_value(o.side, o.qty, o.price, account.position(o.symbol).qty)
            for o in ctx.open_orders
        ),
        ZERO,
    )
    available = max(ZERO, valuation.buying_power - reserved)
    held = account.position(spec.symbol).qty
    closing = min(est.qty, max(ZERO, -held if spec.side is Side.BUY else held))
    # A notional order opening a position needs its whole notional.
    required = est.value if not closing else opening_value(spec.side, est.qty, est.price, held)
    if required > available:
        raise InsufficientBuyingPower(
            f"the order needs ${required} of buying power; ${available} is available",
            required=required,
            available=available,
        )


def check_order(request: OrderRequest, ctx: RiskContext) -> OrderEstimate:
    """Every check, in the documented order; the estimate if all pass."""
    spec = request.entry
    check_tradable(ctx.market)
    check_session(spec, ctx.calendar, ctx.now_ms)
    est = estimate(spec, ctx.market, ctx.config)
    check_prices_vs_market(request, ctx.market)
    check_price_band(spec, ctx.market, ctx.config, ctx.confirm)
    check_order_value(est.value, ctx.limits)
    check_short(spec, est.qty, ctx)
    if request.order_class is not OrderClass.OCO:
        # An OCO exits a position (one of its legs fills, never both).
        check_position(spec, est, ctx)
        check_buying_power(spec, est, ctx)
    return est
