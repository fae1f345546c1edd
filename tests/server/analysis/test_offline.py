"""The offline analyst: deterministic, labelled, streamed like a model, fully verified."""

from __future__ import annotations

from decimal import Decimal

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.analysis.check import check
from server.analysis.offline import OfflineAnalyst, assess_portfolio, assess_symbol, deltas
from server.analysis.port import AnalysisRequest
from server.analysis.result import Assessment, Stance, TextDelta, Usage, Verdict
from server.analysis.snapshot import (
    AccountView,
    NewsItem,
    Preferences,
    RiskTolerance,
    Style,
)
from server.analysis.snapshot_build import alert_view, portfolio_snapshot
from tests.server.analysis.helpers import long_position, make_snapshot, stop_order


async def chunks_of(snapshot: object) -> list[object]:
    return [c async for c in OfflineAnalyst().analyze(AnalysisRequest(snapshot))]  # type: ignore[arg-type]


async def test_the_same_snapshot_gives_the_same_bytes() -> None:
    encoder = msgspec.json.Encoder()
    first = [encoder.encode(c) for c in await chunks_of(make_snapshot(seed=11))]
    second = [encoder.encode(c) for c in await chunks_of(make_snapshot(seed=11))]
    assert first == second


async def test_streamed_like_a_model_deltas_then_assessment_then_usage() -> None:
    chunks = await chunks_of(make_snapshot())
    texts = [c for c in chunks if isinstance(c, TextDelta)]
    assert len(texts) > 5
    assert isinstance(chunks[-2], Assessment) and isinstance(chunks[-1], Usage)
    assert chunks[: len(texts)] == texts
    assessment = chunks[-2]
    assert "".join(t.text for t in texts) == assessment.rationale
    assert assessment.rationale.startswith("Rule-based read of NVDA (no language model involved).")
    assert chunks[-1] == Usage()  # no tokens, no cost


def test_deltas_join_back_exactly() -> None:
    text = "word " * 40 + "averyveryveryveryverylongwordwithoutanyspaceatallinsideitxxxxxxxxxxx end"
    pieces = deltas(text, 16)
    assert "".join(pieces) == text
    assert all(pieces)


def test_an_uptrend_reads_bullish_with_a_consistent_idea() -> None:
    snapshot = make_snapshot(
        drift=0.004, preferences=Preferences(Style.SWING, RiskTolerance.MEDIUM)
    )
    a = assess_symbol(snapshot)
    assert a.stance is Stance.BULLISH
    idea = a.trade_idea
    assert idea is not None and idea.side == "buy"
    assert idea.stop < idea.entry < idea.target
    assert (idea.target - idea.entry) == 2 * (idea.entry - idea.stop)
    assert idea.horizon == "days"
    verdict = check(a, snapshot)
    assert verdict.verdict is Verdict.PASSED, verdict


def test_a_downtrend_reads_bearish() -> None:
    a = assess_symbol(make_snapshot(drift=-0.002, seed=9))
    assert a.stance is Stance.BEARISH
    assert a.trade_idea is not None and a.trade_idea.side == "sell"
    assert a.trade_idea.target < a.trade_idea.entry < a.trade_idea.stop


def test_risk_tolerance_sets_the_stop_distance() -> None:
    ideas = {}
    for tolerance in RiskTolerance:
        a = assess_symbol(
            make_snapshot(drift=0.004, preferences=Preferences(Style.SWING, tolerance))
        )
        assert a.trade_idea is not None
        ideas[tolerance] = a.trade_idea.entry - a.trade_idea.stop
    assert ideas[RiskTolerance.LOW] < ideas[RiskTolerance.MEDIUM] < ideas[RiskTolerance.HIGH]


def test_no_data_is_said_plainly() -> None:
    from server.analysis.snapshot import SymbolSnapshot

    empty = SymbolSnapshot(
        symbol="XYZ", live=False, quote=None, trade=None, session=None, series=()
    )
    a = assess_symbol(empty)
    assert a.stance is Stance.NEUTRAL and a.confidence == 0 and a.trade_idea is None
    assert "nothing to read" in a.rationale


def test_the_position_and_its_risk_are_read() -> None:
    pos = long_position("NVDA", "10", "95.50", 100.0)
    snapshot = make_snapshot(
        drift=-0.004,
        position=pos,
        orders=[stop_order("o1", "sell", "10", "92.10")],
        equity=Decimal(50_000),
        alerts=[
            alert_view("a1", {"conditions": [{"left": "LAST", "op": "crossingUp", "value": 104.5}]})
        ],
        news=[
            NewsItem(
                "NVDA jumps 5% on $2.1B deal", "https://wire.example/n", "2024-06-05T12:00:00Z"
            )
        ],
    )
    a = assess_symbol(snapshot)
    assert "You are long 10 shares at an average of $95.50" in a.rationale
    assert "Your stop at $92.10 would realise -$34.00." in a.rationale
    assert "The read runs against your position." in a.rationale
    assert "Your nearest alert level is $104.50" in a.rationale
    assert check(a, snapshot).verdict is Verdict.PASSED


def test_portfolio_review() -> None:
    aaa = make_snapshot(
        "AAA",
        drift=0.004,
        position=long_position("AAA", "100", "90", 100.0),
        equity=Decimal(20_000),
    )
    bbb = make_snapshot(
        "BBB",
        drift=-0.004,
        position=long_position("BBB", "10", "100", 100.0),
        equity=Decimal(20_000),
    )
    review = portfolio_snapshot(AccountView(Decimal(20_000), Decimal(9_000)), [aaa, bbb])
    a = assess_portfolio(review)
    assert a.trade_idea is None and a.key_levels == []
    assert a.stance is Stance.BULLISH  # weighted by market value: AAA is ten times BBB
    # AAA is half of the equity: called out; BBB is 5%.
    assert "AAA: long 100 shares, P&L $1,000.00, 50.0% of equity (concentrated)" in a.rationale
    assert "BBB: long 10 shares, P&L $0.00, 5.0% of equity;" in a.rationale
    assert check(a, review).verdict is Verdict.PASSED


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    drift=st.sampled_from([-0.006, -0.002, 0.0, 0.002, 0.006]),
    price=st.sampled_from([0.5, 7.25, 100.0, 2345.0]),
    style=st.sampled_from([None, *Style]),
    tolerance=st.sampled_from([None, *RiskTolerance]),
    held=st.booleans(),
)
def test_every_figure_of_the_offline_prose_is_verified(
    *,
    seed: int,
    drift: float,
    price: float,
    style: Style | None,
    tolerance: RiskTolerance | None,
    held: bool,
) -> None:
    position = long_position("NVDA", "10", f"{price * 0.97:.2f}", price) if held else None
    snapshot = make_snapshot(
        price=price,
        seed=seed,
        drift=drift,
        preferences=Preferences(style, tolerance),
        position=position,
        orders=[stop_order("s", "sell", "10", f"{price * 0.9:.2f}")] if held else [],
        equity=Decimal(100_000),
    )
    a = assess_symbol(snapshot)
    result = check(a, snapshot)
    assert result.unverified_figures == (), (result.unverified_figures, a.rationale)
    assert result.idea_problems == ()
    assert result.verdict is Verdict.PASSED
