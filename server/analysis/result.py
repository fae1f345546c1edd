"""What an analysis produces, and the chunks it streams in.

- ``Assessment`` is what the analyst writes: the prose (``rationale``), the stance, a
  confidence, key levels and an optional trade idea. It is the input schema of the
  Anthropic tool the model is forced to call (``rationale`` first, so the prose is
  generated, and streamed, before the structured fields), and the offline analyst
  produces the same struct. Unknown fields are refused: an answer that does not fit is
  invalid, never guessed at.
- ``AnalysisResult`` is the assessment after the check (``server.analysis.check``), with
  the check's verdict and the figures it could not verify, and who wrote it.
- ``Usage`` is what the analysis cost: tokens by kind, an estimate in dollars, and
  whether it was served from the cache (then it cost nothing).

Prices in an assessment are ``Decimal`` (an idea becomes an order); the model writes them
as decimal strings ("223.50"); numbers are accepted too and read exactly.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, TypeAlias

import msgspec

from server.analysis.snapshot import Snapshot

#: Room for a thorough analysis, and a bound on what one answer may cost to store.
MAX_RATIONALE_CHARS = 12_000
MAX_KEY_LEVELS = 8

#: Largest price an assessment may state (no listed US equity trades near it).
MAX_PRICE = Decimal(1_000_000)

# msgspec has no bounds for Decimal: ``parse_assessment`` checks them.
Price = Annotated[
    Decimal,
    msgspec.Meta(description='A positive price in US dollars as a decimal string, e.g. "223.50"'),
]


class Stance(StrEnum):
    BULLISH = "bullish"
    NEUTRAL = "neutral"
    BEARISH = "bearish"


class KeyLevel(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    kind: Literal["support", "resistance", "pivot", "target", "stop"]
    price: Price
    #: Where the level comes from, e.g. "20-bar Donchian low (1h)".
    basis: Annotated[str, msgspec.Meta(max_length=200)]


class TradeIdea(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    """A limit entry with a protective stop and a profit target (a bracket order)."""

    side: Literal["buy", "sell"]
    entry: Price
    stop: Price
    target: Price
    #: How long the idea is meant to be held ("intraday", "days", "weeks").
    horizon: Annotated[str, msgspec.Meta(max_length=100)]
    #: What would invalidate it besides the stop.
    invalidation: Annotated[str, msgspec.Meta(max_length=500)] = ""


class Assessment(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    rationale: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_RATIONALE_CHARS,
            description=(
                "The analysis in plain prose for the user. Every number it states about "
                "the market must be copied from the snapshot, with the same precision or "
                "rounded."
            ),
        ),
    ]
    stance: Stance
    confidence: Annotated[
        int, msgspec.Meta(ge=0, le=100, description="How sure, 0 (a guess) to 100 (certain)")
    ]
    key_levels: Annotated[list[KeyLevel], msgspec.Meta(max_length=MAX_KEY_LEVELS)]
    trade_idea: TradeIdea | None = None


class Verdict(StrEnum):
    #: Every figure matched the snapshot and the idea (if any) is consistent.
    PASSED = "passed"
    #: Some figures could not be matched (listed); the idea, if any, is consistent.
    UNVERIFIED_FIGURES = "unverified_figures"
    #: The trade idea is inconsistent or out of band: not actionable.
    FAILED = "failed"


class UnverifiedFigure(msgspec.Struct, frozen=True, rename="camel"):
    #: The figure as written, e.g. "$231.40" or "12%".
    text: str
    #: Where it is: "rationale" (with ``offset``) or a structured field ("keyLevels[2]").
    where: str
    offset: int = -1


class Check(msgspec.Struct, frozen=True, rename="camel"):
    verdict: Verdict
    #: Figures stated that match nothing in the snapshot.
    unverified_figures: tuple[UnverifiedFigure, ...]
    #: Problems with the trade idea (empty when it is consistent or absent).
    idea_problems: tuple[str, ...]
    #: How many figures were checked (matched or not).
    figures_checked: int


class AnalysisResult(msgspec.Struct, frozen=True, rename="camel"):
    #: "rule-based" for the offline analyst, else the model's id.
    analyst: str
    stance: Stance
    confidence: int
    key_levels: tuple[KeyLevel, ...]
    trade_idea: TradeIdea | None
    rationale: str
    check: Check


class Usage(msgspec.Struct, frozen=True, rename="camel"):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    #: Estimated cost in US dollars (``None``: the model's prices are unknown).
    cost_usd: Decimal | None = Decimal(0)
    #: Served from the cache: this request cost no tokens.
    cached: bool = False


class TextDelta(msgspec.Struct, frozen=True):
    """The next piece of the prose, as it is written."""

    text: str


class ResultReady(msgspec.Struct, frozen=True, rename="camel"):
    """The checked result, after the last text delta, with the snapshot it is based on.
    ``analysis_id`` names the stored analysis (for history, and for an order from its
    idea)."""

    analysis_id: str
    result: AnalysisResult
    snapshot: Snapshot
    fingerprint: str


#: What an analyst yields: text deltas, then one assessment, then its usage.
AnalystChunk: TypeAlias = TextDelta | Assessment | Usage
#: What the service streams: text deltas, then the checked result, then the usage.
Chunk: TypeAlias = TextDelta | ResultReady | Usage


class InvalidAssessment(ValueError):
    """The analyst's structured answer does not validate; the message says where.
    ``malformed``: it is not even JSON."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


_ASSESSMENT = msgspec.json.Decoder(Assessment)


def _check_price(value: Decimal, where: str) -> None:
    if not value.is_finite() or value <= 0 or value > MAX_PRICE:
        raise InvalidAssessment(f"{where} must be a price above 0 and at most {MAX_PRICE}")


def parse_assessment(data: bytes | str) -> Assessment:
    """Decode and validate an assessment (JSON), or raise ``InvalidAssessment``."""
    try:
        assessment = _ASSESSMENT.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidAssessment(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidAssessment(str(exc), malformed=True) from None
    for i, level in enumerate(assessment.key_levels):
        _check_price(level.price, f"keyLevels[{i}].price")
    if assessment.trade_idea is not None:
        for name in ("entry", "stop", "target"):
            _check_price(getattr(assessment.trade_idea, name), f"tradeIdea.{name}")
    return assessment
