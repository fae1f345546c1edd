"""The check: prose figures against the snapshot, the idea against itself and the market."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from server.analysis.check import check, checked_result, idea_problems
from server.analysis.result import (
    Assessment,
    KeyLevel,
    Stance,
    TradeIdea,
    Verdict,
    parse_assessment,
)
from server.analysis.snapshot import AccountView, NewsItem
from server.analysis.snapshot_build import portfolio_snapshot
from tests.server.analysis.helpers import make_snapshot

SNAPSHOT = make_snapshot(
    price=100.0,
    news=[
        NewsItem("Chipmaker up 7.5% on record sales", "https://x.example/a", "2024-06-05T12:00:00Z")
    ],
)
H1 = SNAPSHOT.series[0].indicators


def assess(
    prose: str, *, idea: TradeIdea | None = None, levels: list[KeyLevel] | None = None
) -> Assessment:
    return Assessment(prose, Stance.BULLISH, 60, levels or [], idea)


def idea(side: str, entry: str, stop: str, target: str) -> TradeIdea:
    return TradeIdea(side, Decimal(entry), Decimal(stop), Decimal(target), "days")  # type: ignore[arg-type]


def test_grounded_prose_passes() -> None:
    assert H1.rsi14 is not None and H1.ema20 is not None
    prose = (
        f"Price $100.00 (up {SNAPSHOT.session.change_pct}% today, high $101), RSI of "  # type: ignore[union-attr]
        f"{round(H1.rsi14)}, EMA(20) at ${H1.ema20:.1f}; headlines say up 7.5%. Confidence 60."
    )
    result = check(assess(prose), SNAPSHOT)
    assert result.verdict is Verdict.PASSED, result
    assert result.figures_checked == 7


def test_an_invented_figure_is_flagged_where_it_is() -> None:
    prose = "The price is $100.00 and resistance sits at $117.43, 12.6% above."
    result = check(assess(prose), SNAPSHOT)
    assert result.verdict is Verdict.UNVERIFIED_FIGURES
    assert [(f.text, f.offset) for f in result.unverified_figures] == [
        ("$117.43", prose.index("$117.43")),
        ("12.6%", prose.index("12.6%")),
    ]


def test_a_figure_of_the_wrong_unit_is_not_verified() -> None:
    assert H1.rsi14 is not None
    result = check(assess(f"RSI is ${H1.rsi14:.2f}."), SNAPSHOT)
    assert [f.text for f in result.unverified_figures] == [f"${H1.rsi14:.2f}"]


def test_the_ideas_own_numbers_are_verified() -> None:
    i = idea("buy", "100.00", "97.00", "106.00")
    prose = (
        "Buy at $100.00, stop $97.00 (3.0% risk, $3.00 a share), target $106.00: reward/risk 2.0."
    )
    result = check(assess(prose, idea=i), SNAPSHOT)
    assert result.verdict is Verdict.PASSED, result


def test_key_levels_are_checked_against_the_snapshot() -> None:
    assert H1.bb_upper is not None
    levels = [
        KeyLevel("resistance", Decimal(f"{H1.bb_upper:.2f}"), "1h upper Bollinger band"),
        KeyLevel("support", Decimal("91.37"), "made up"),
        KeyLevel("stop", Decimal("97.00"), "the idea's stop"),
    ]
    result = check(
        assess("Levels below.", idea=idea("buy", "100", "97.00", "106"), levels=levels), SNAPSHOT
    )
    assert [(f.text, f.where) for f in result.unverified_figures] == [("91.37", "keyLevels[1]")]


@pytest.mark.parametrize(
    ("i", "problem"),
    [
        (idea("buy", "100", "103", "110"), "a buy idea needs its stop (103) below its entry (100)"),
        (idea("buy", "100", "97", "99"), "a buy idea needs its stop (97) below its entry (100)"),
        (idea("sell", "100", "97", "90"), "a sell idea needs its stop (97) above its entry (100)"),
        (
            idea("buy", "115", "110", "125"),
            "the entry (115) is 15.0% from the last price (100.0); at most 10% is allowed",
        ),
        (
            idea("buy", "100", "60", "110"),
            "the stop (60) is 40.0% from the last price (100.0); at most 30% is allowed",
        ),
    ],
)
def test_an_inconsistent_idea_fails(i: TradeIdea, problem: str) -> None:
    result = check(assess("Nothing.", idea=i), SNAPSHOT)
    assert result.verdict is Verdict.FAILED
    assert any(p.startswith(problem) for p in result.idea_problems), result.idea_problems


def test_consistent_ideas_both_ways() -> None:
    assert idea_problems(idea("buy", "100", "95", "110"), 100.0) == []
    assert idea_problems(idea("sell", "100", "105", "90"), 100.0) == []
    assert idea_problems(idea("buy", "100", "95", "110"), None) == [
        "there is no last price to check the idea against"
    ]


def test_a_portfolio_review_has_no_idea() -> None:
    review = portfolio_snapshot(AccountView(Decimal(1000), Decimal(1000)), [])
    result = check(assess("Equity is $1,000.00.", idea=idea("buy", "100", "95", "110")), review)
    assert result.idea_problems == ("a portfolio review carries no trade idea",)
    assert result.verdict is Verdict.FAILED


def test_checked_result_carries_the_verdict_and_label() -> None:
    result = checked_result(assess("Price $100.00."), SNAPSHOT, "claude-x")
    assert result.analyst == "claude-x" and result.check.verdict is Verdict.PASSED
    assert result.stance is Stance.BULLISH


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"rationale": "x", "stance": "up", "confidence": 1, "keyLevels": []},
            "Invalid enum value 'up'",
        ),
        (
            {"rationale": "x", "stance": "bullish", "confidence": 101, "keyLevels": []},
            "Expected `int` <= 100",
        ),
        (
            {"rationale": "", "stance": "bullish", "confidence": 1, "keyLevels": []},
            "Expected `str` of length >= 1",
        ),
        (
            {"rationale": "x", "stance": "bullish", "confidence": 1, "keyLevels": [], "extra": 1},
            "unknown field `extra`",
        ),
        (
            {
                "rationale": "x",
                "stance": "bullish",
                "confidence": 1,
                "keyLevels": [],
                "tradeIdea": {
                    "side": "buy",
                    "entry": "-1",
                    "stop": "1",
                    "target": "2",
                    "horizon": "d",
                },
            },
            "tradeIdea.entry must be a price above 0",
        ),
        (
            {
                "rationale": "x",
                "stance": "bullish",
                "confidence": 1,
                "keyLevels": [],
                "tradeIdea": {
                    "side": "buy",
                    "entry": "Infinity",
                    "stop": "1",
                    "target": "2",
                    "horizon": "d",
                },
            },
            "tradeIdea.entry must be a price above 0",
        ),
    ],
)
def test_an_answer_that_does_not_fit_is_refused(doc: dict[str, object], message: str) -> None:
    from server.analysis.result import InvalidAssessment

    with pytest.raises(InvalidAssessment, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_assessment(msgspec.json.encode(doc))
