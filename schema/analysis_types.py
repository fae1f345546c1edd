"""The GraphQL types of an analysis: its streamed chunks, its checked result, its record.

Prices of levels and ideas are exact ``Decimal`` strings (an idea becomes an order);
the snapshot the analyst saw is returned as it was stored, its canonical JSON parsed
(money as decimal strings there too), with its fingerprint.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import msgspec
import strawberry
from strawberry.scalars import JSON

from schema.pagination import PageInfo
from schema.scalars import Timestamp
from server.analysis import result as res
from server.analysis.gather import PORTFOLIO
from server.analysis.result import Chunk, ResultReady, TextDelta
from server.analysis.service import UsageToday
from server.analysis.snapshot import Preferences, Snapshot, Style
from server.analysis.snapshot import RiskTolerance as RiskToleranceValue
from server.storage.analyses import StoredAnalysis


@strawberry.enum(description="Which way the analysis leans.")
class Stance(Enum):
    BULLISH = "bullish"
    NEUTRAL = "neutral"
    BEARISH = "bearish"


@strawberry.enum(description="The check's verdict on an analysis (docs/analysis.md).")
class CheckVerdict(Enum):
    PASSED = "passed"
    UNVERIFIED_FIGURES = strawberry.enum_value(
        "unverified_figures",
        description="Some figures of the prose match nothing in the snapshot (listed).",
    )
    FAILED = strawberry.enum_value(
        "failed", description="The trade idea is inconsistent: no order can be made from it."
    )


@strawberry.enum
class AnalysisStatus(Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@strawberry.enum(description="Your trading style: which bars an analysis reads first.")
class AnalysisStyle(Enum):
    DAY = "day"
    SWING = "swing"
    POSITION = "position"


@strawberry.enum(description="How much of your equity a trade idea is sized to risk.")
class RiskTolerance(Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@strawberry.enum
class KeyLevelKind(Enum):
    SUPPORT = "support"
    RESISTANCE = "resistance"
    PIVOT = "pivot"
    TARGET = "target"
    STOP = "stop"


@strawberry.enum
class IdeaSide(Enum):
    BUY = "buy"
    SELL = "sell"


@strawberry.type
class KeyLevel:
    kind: KeyLevelKind
    price: Decimal
    basis: str = strawberry.field(description='Where it comes from, e.g. "20-bar low (1h)".')


@strawberry.type(
    description="A limit entry with a protective stop and a profit target: a bracket order "
    "(placeOrderFromIdea)."
)
class TradeIdea:
    side: IdeaSide
    entry: Decimal
    stop: Decimal
    target: Decimal
    horizon: str
    invalidation: str


@strawberry.type(description="A figure the prose states that matches nothing in the snapshot.")
class UnverifiedFigure:
    text: str
    where: str = strawberry.field(description='"rationale" (see offset) or e.g. "keyLevels[2]".')
    offset: int = strawberry.field(description="Character offset in the rationale, else -1.")


@strawberry.type(description="What was checked before the analysis was shown.")
class AnalysisCheck:
    verdict: CheckVerdict
    unverified_figures: list[UnverifiedFigure]
    idea_problems: list[str]
    figures_checked: int


@strawberry.type(description="The checked, structured result of an analysis.")
class AnalysisResult:
    analyst: str = strawberry.field(description='"rule-based" (offline), or the model id.')
    rule_based: bool
    stance: Stance
    confidence: int = strawberry.field(description="0 (a guess) to 100.")
    key_levels: list[KeyLevel]
    trade_idea: TradeIdea | None
    rationale: str = strawberry.field(description="The whole prose, as streamed.")
    check: AnalysisCheck

    @classmethod
    def of(cls, r: res.AnalysisResult) -> AnalysisResult:
        idea = r.trade_idea
        return cls(
            analyst=r.analyst,
            rule_based=r.analyst == "rule-based",
            stance=Stance(r.stance.value),
            confidence=r.confidence,
            key_levels=[
                KeyLevel(kind=KeyLevelKind(k.kind), price=k.price, basis=k.basis)
                for k in r.key_levels
            ],
            trade_idea=None
            if idea is None
            else TradeIdea(
                side=IdeaSide(idea.side),
                entry=idea.entry,
                stop=idea.stop,
                target=idea.target,
                horizon=idea.horizon,
                invalidation=idea.invalidation,
            ),
            rationale=r.rationale,
            check=AnalysisCheck(
                verdict=CheckVerdict(r.check.verdict.value),
                unverified_figures=[
                    UnverifiedFigure(text=f.text, where=f.where, offset=f.offset)
                    for f in r.check.unverified_figures
                ],
                idea_problems=list(r.check.idea_problems),
                figures_checked=r.check.figures_checked,
            ),
        )


@strawberry.type(description="What an analysis cost.")
class AnalysisUsage:
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal | None = strawberry.field(
        description="Estimated, in US dollars; null when the model's prices are unknown."
    )
    cached: bool = strawberry.field(description="Served from the cache: it cost no tokens.")

    @classmethod
    def of(cls, u: res.Usage) -> AnalysisUsage:
        return cls(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cost_usd=u.cost_usd,
            cached=u.cached,
        )


def snapshot_json(snapshot: Snapshot) -> Any:
    """The snapshot as JSON values (decimals as strings), as stored and fingerprinted."""
    return msgspec.to_builtins(snapshot)


@strawberry.type(
    description="One piece of a streamed analysis; exactly one of text, result and usage is "
    "set. First the prose in `text` deltas as it is written, then the checked `result` with "
    "the `snapshot` it is based on, then the `usage`."
)
class AnalysisChunk:
    analysis_id: strawberry.ID = strawberry.field(
        description="The stored analysis (Query.analysis, placeOrderFromIdea)."
    )
    text: str | None = None
    result: AnalysisResult | None = None
    snapshot: JSON | None = strawberry.field(
        default=None, description="What the analyst saw, with the result."
    )
    fingerprint: str | None = strawberry.field(
        default=None, description="SHA-256 of the snapshot's canonical JSON, with the result."
    )
    usage: AnalysisUsage | None = None

    @classmethod
    def of(cls, analysis_id: uuid.UUID, chunk: Chunk) -> AnalysisChunk:
        ident = strawberry.ID(str(analysis_id))
        if isinstance(chunk, TextDelta):
            return cls(analysis_id=ident, text=chunk.text)
        if isinstance(chunk, ResultReady):
            return cls(
                analysis_id=ident,
                result=AnalysisResult.of(chunk.result),
                snapshot=snapshot_json(chunk.snapshot),
                fingerprint=chunk.fingerprint,
            )
        return cls(analysis_id=ident, usage=AnalysisUsage.of(chunk))


@strawberry.type(description="Why an analysis failed.")
class AnalysisError:
    code: str
    message: str


def _ts(dt: datetime | None) -> Timestamp | None:
    return None if dt is None else Timestamp(dt.timestamp() * 1000)


@strawberry.type(description="A stored analysis: what was asked, what the analyst saw and said.")
class Analysis:
    id: strawberry.ID
    symbol: str | None = strawberry.field(description="Null for a portfolio review.")
    question: str
    analyst: str
    status: AnalysisStatus
    cached: bool
    charged: bool = strawberry.field(description="Counted against your daily quota.")
    created_at: Timestamp
    finished_at: Timestamp | None
    result: AnalysisResult | None
    snapshot: JSON | None
    fingerprint: str | None
    usage: AnalysisUsage
    error: AnalysisError | None

    @classmethod
    def of(cls, a: StoredAnalysis) -> Analysis:
        return cls(
            id=strawberry.ID(str(a.id)),
            symbol=None if a.subject == PORTFOLIO else a.subject,
            question=a.question,
            analyst=a.analyst,
            status=AnalysisStatus(a.status.value),
            cached=a.cached,
            charged=a.charged,
            created_at=Timestamp(a.created_at.timestamp() * 1000),
            finished_at=_ts(a.finished_at),
            result=None if a.result is None else AnalysisResult.of(a.result),
            snapshot=None if a.snapshot is None else snapshot_json(a.snapshot),
            fingerprint=a.fingerprint,
            usage=AnalysisUsage.of(a.usage),
            error=None
            if a.error_code is None
            else AnalysisError(code=a.error_code, message=a.error_message or ""),
        )


@strawberry.type
class AnalysisEdge:
    cursor: str
    node: Analysis


@strawberry.type(description="A page of your analyses, newest first.")
class AnalysisConnection:
    edges: list[AnalysisEdge]
    page_info: PageInfo


@strawberry.type(description="Your stated style and risk tolerance; null: not stated.")
class AnalysisPreferences:
    style: AnalysisStyle | None
    risk_tolerance: RiskTolerance | None

    @classmethod
    def of(cls, p: Preferences) -> AnalysisPreferences:
        return cls(
            style=None if p.style is None else AnalysisStyle(p.style.value),
            risk_tolerance=None
            if p.risk_tolerance is None
            else RiskTolerance(p.risk_tolerance.value),
        )

    def value(self) -> Preferences:
        return Preferences(
            style=None if self.style is None else Style(self.style.value),
            risk_tolerance=None
            if self.risk_tolerance is None
            else RiskToleranceValue(self.risk_tolerance.value),
        )


@strawberry.type(description="Today's analyses (UTC day) against your tier's daily quota.")
class AnalysisQuota:
    used: int = strawberry.field(description="Charged today.")
    limit: int
    remaining: int
    cached: int = strawberry.field(description="Served from the cache today (free).")
    failed: int = strawberry.field(description="Failed today (free).")
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal
    resets_at: Timestamp

    @classmethod
    def of(cls, u: UsageToday) -> AnalysisQuota:
        return cls(
            used=u.analyses_used,
            limit=u.analyses_limit,
            remaining=u.analyses_remaining,
            cached=u.cached,
            failed=u.failed,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cost_usd=u.cost_usd,
            resets_at=Timestamp(u.resets_at.timestamp() * 1000),
        )
