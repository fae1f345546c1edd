"""Checked before shown: the prose's figures against the snapshot, and the trade idea
against itself and the market.

**Figures.** Every figure the rationale states (``server.analysis.figures``) must match a
number of the snapshot (``server.analysis.known``) or one of the assessment's own
(its confidence, key levels and trade idea, with the idea's risk, reward and
reward/risk). Matching rule, for a figure written as ``s`` with ``d`` decimals (one unit
in the last place ``u = 10^-d``, times K/M/B when written so) and a snapshot value ``v``:

    s - u/2 <= |v| < s + u

that is, ``v`` rounds to ``s`` (either way at a tie) or truncates to it. "$223.8"
matches 223.82 and 223.75; "RSI of 61" matches 61.4 and 61.9 (truncated) but not
62.6; "$224" matches 223.5 up to 224.99. Signs are compared as magnitudes (the prose
says "down 2.3%"). A dollar figure ("$...") matches only dollar values (prices, ATR,
MACD, money), a percentage only percentages, a plain number anything. A match means
the number is in the snapshot at the precision stated, not that the sentence uses it
correctly; a figure that matches nothing is listed in ``unverifiedFigures`` with where
it is, which does not mean it is wrong: it may be arithmetic of the analyst's own.

Key levels are checked the same way against the snapshot's dollar values (a level of
kind "stop" or "target" may also be the trade idea's own).

**The idea.** A buy: stop < entry < target; a sell: target < entry < stop. The entry
must be within ``ENTRY_BAND`` of the last price and the stop and target within
``EXIT_BAND``: an idea whose entry is far from the market is not one to act on today,
and levels that far out are a sign the analyst misread the price. A portfolio review
carries no idea. Any problem makes the verdict ``failed``: not actionable.
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal

from server.analysis.figures import Stated, Unit, extract
from server.analysis.known import FigureSet, known_figures, own_figures
from server.analysis.result import (
    AnalysisResult,
    Assessment,
    Check,
    TradeIdea,
    UnverifiedFigure,
    Verdict,
)
from server.analysis.snapshot import Snapshot, SymbolSnapshot, last_price

#: The entry may be at most this far from the last price (fraction).
ENTRY_BAND = 0.10
#: The stop and the target at most this far.
EXIT_BAND = 0.30
#: Float slack of a bound, relative to the figure.
_SLACK = 1e-12


def _bounds(stated: float, ulp: float) -> tuple[float, float]:
    """``[lo, hi)`` of the magnitudes written as ``stated`` with ``ulp``. The lower bound
    is inclusive (a tie rounds either way), the upper one exclusive (truncation); the
    slack absorbs the float noise of values rounded to 4 decimals, and stays far below
    a unit in the last place, so it never admits the excluded bound."""
    slack = min(ulp * 1e-3, _SLACK * max(1.0, stated))
    return stated - ulp / 2 - slack, stated + ulp - slack


def matches(stated: float, ulp: float, value: float) -> bool:
    """Whether ``value`` (its magnitude) is what was written as ``stated`` with ``ulp``."""
    lo, hi = _bounds(stated, ulp)
    return lo <= abs(value) < hi


def _any_in(values: list[float], stated: float, ulp: float) -> bool:
    lo, hi = _bounds(stated, ulp)
    i = bisect_left(values, lo)
    return i < len(values) and values[i] < hi


def is_known(figure: Stated, figures: FigureSet) -> bool:
    s, u = float(figure.value), float(figure.ulp)
    pools: tuple[list[float], ...]
    if figure.unit is Unit.DOLLAR:
        pools = (figures.dollars,)
    elif figure.unit is Unit.PERCENT:
        pools = (figures.percents,)
    else:
        pools = (figures.dollars, figures.percents, figures.plain)
    return any(_any_in(pool, s, u) for pool in pools)


def idea_problems(idea: TradeIdea, last: float | None) -> list[str]:
    problems: list[str] = []
    entry, stop, target = idea.entry, idea.stop, idea.target
    if idea.side == "buy" and not stop < entry < target:
        problems.append(
            f"a buy idea needs its stop ({stop}) below its entry ({entry}) "
            f"and its target ({target}) above it"
        )
    if idea.side == "sell" and not target < entry < stop:
        problems.append(
            f"a sell idea needs its stop ({stop}) above its entry ({entry}) "
            f"and its target ({target}) below it"
        )
    if last is None or last <= 0:
        problems.append("there is no last price to check the idea against")
        return problems
    reference = Decimal(repr(last))
    for name, price, band in (
        ("entry", entry, ENTRY_BAND),
        ("stop", stop, EXIT_BAND),
        ("target", target, EXIT_BAND),
    ):
        distance = abs(price / reference - 1)
        if distance > Decimal(repr(band)):
            problems.append(
                f"the {name} ({price}) is {distance * 100:.1f}% from the last price "
                f"({reference}); at most {band * 100:g}% is allowed"
            )
    return problems


def check(assessment: Assessment, snapshot: Snapshot) -> Check:
    figures = known_figures(snapshot)
    own = own_figures(assessment, snapshot)
    both = figures.merged(own)
    stated = extract(assessment.rationale)
    unverified = [
        UnverifiedFigure(f.text, "rationale", f.offset) for f in stated if not is_known(f, both)
    ]
    idea = assessment.trade_idea
    idea_prices = {idea.entry, idea.stop, idea.target} if idea is not None else set[Decimal]()
    for i, level in enumerate(assessment.key_levels):
        if level.kind in ("stop", "target") and level.price in idea_prices:
            continue
        figure = Stated(str(level.price), -1, level.price, Unit.DOLLAR, _level_ulp(level.price))
        if not is_known(figure, figures):
            unverified.append(UnverifiedFigure(str(level.price), f"keyLevels[{i}]"))
    problems: list[str] = []
    if idea is not None:
        if isinstance(snapshot, SymbolSnapshot):
            problems = idea_problems(idea, last_price(snapshot))
        else:
            problems = ["a portfolio review carries no trade idea"]
    if problems:
        verdict = Verdict.FAILED
    elif unverified:
        verdict = Verdict.UNVERIFIED_FIGURES
    else:
        verdict = Verdict.PASSED
    return Check(
        verdict=verdict,
        unverified_figures=tuple(unverified),
        idea_problems=tuple(problems),
        figures_checked=len(stated) + len(assessment.key_levels),
    )


def _level_ulp(price: Decimal) -> Decimal:
    exponent = price.normalize().as_tuple().exponent
    return Decimal(1).scaleb(min(0, exponent if isinstance(exponent, int) else 0))


def checked_result(assessment: Assessment, snapshot: Snapshot, analyst: str) -> AnalysisResult:
    """The assessment with its check, as the user sees it."""
    return AnalysisResult(
        analyst=analyst,
        stance=assessment.stance,
        confidence=assessment.confidence,
        key_levels=tuple(assessment.key_levels),
        trade_idea=assessment.trade_idea,
        rationale=assessment.rationale,
        check=check(assessment, snapshot),
    )
