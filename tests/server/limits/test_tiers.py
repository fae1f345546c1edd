"""The tier table: every tier is at least as generous as the one below it."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from server.limits.tiers import ANONYMOUS, ELITE, FREE, PRO, Tier, TierLimits, limits_for

NUMBERS = [f.name for f in dataclasses.fields(TierLimits) if f.name not in ("name", "read_only")]


def test_limits_for_each_tier_and_anonymous() -> None:
    assert limits_for(Tier.FREE) is FREE
    assert limits_for(Tier("pro")) is PRO
    assert limits_for(Tier.ELITE) is ELITE
    assert limits_for(None) is ANONYMOUS
    assert [t.value for t in Tier] == ["free", "pro", "elite"]


@pytest.mark.parametrize(("lower", "higher"), [(ANONYMOUS, FREE), (FREE, PRO), (PRO, ELITE)])
def test_tiers_only_grow(lower: TierLimits, higher: TierLimits) -> None:
    for name in NUMBERS:
        assert getattr(lower, name) <= getattr(higher, name), name


def test_anonymous_reads_like_free_and_writes_nothing() -> None:
    assert ANONYMOUS.read_only and not ANONYMOUS.can_trade
    for name in ("requests_per_minute", "burst", "concurrent_subscriptions", "symbols_streamed"):
        assert getattr(ANONYMOUS, name) == getattr(FREE, name)
    assert ANONYMOUS.query_cost == FREE.query_cost
    assert (ANONYMOUS.alerts, ANONYMOUS.analyses_per_day, ANONYMOUS.orders_per_minute) == (0, 0, 0)
    assert all(t.can_trade and not t.read_only for t in (FREE, PRO, ELITE))


def test_rates_per_second() -> None:
    assert FREE.requests_per_second == 1.0
    assert PRO.orders_per_second == 1.0
    assert ANONYMOUS.orders_per_second == 0.0


def test_trading_limits() -> None:
    assert FREE.margin_multiplier == 1  # a cash account
    assert PRO.margin_multiplier == ELITE.margin_multiplier == 2  # Reg T margin
    assert ANONYMOUS.max_order_value == ANONYMOUS.max_position_value == 0
    for tier in (FREE, PRO, ELITE):
        assert 0 < tier.max_order_value <= tier.max_position_value


def test_inconsistent_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="order_burst"):
        dataclasses.replace(FREE, order_burst=0)
    with pytest.raises(ValueError, match="at least 1"):
        dataclasses.replace(FREE, burst=0)
    with pytest.raises(ValueError, match="negative"):
        dataclasses.replace(FREE, alerts=-1)
    with pytest.raises(ValueError, match="negative"):
        dataclasses.replace(FREE, max_order_value=Decimal(-1))
    with pytest.raises(ValueError, match="margin_multiplier"):
        dataclasses.replace(FREE, margin_multiplier=Decimal("0.5"))
    with pytest.raises(ValueError, match="margin_multiplier"):
        dataclasses.replace(FREE, margin_multiplier=Decimal(5))
