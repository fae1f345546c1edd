"""AI analysis in GraphQL: streamed, requested, read back, acted on.

``analysis(symbol, question)`` and ``portfolioReview(question)`` stream an analysis to
one subscriber. Unlike market data, nothing about it can be shared (it is one user's
question about their own position, charged to their quota, ending with a result), so
it is a per-subscriber stream, not a multiplexed ``Feed``: strawberry's pipeline
executes each chunk and sends it through the connection's outbox, in order, then
``complete``; an error of the analyst (``ANALYST_UNAVAILABLE``, ``ANALYSIS_INVALID``)
ends it as a ``next`` with the error, then ``complete``.

Admission (the quota, at most two running at once, the symbol) happens in the resolver,
so a refusal is the operation's ``error`` message and nothing starts. When the client
completes the operation or disconnects, strawberry closes the stream, which closes
the analyst's upstream stream at once (no more tokens are generated) and records the
analysis as cancelled; a stream dropped before its first chunk was asked for gives its
place back too (``ChunkStream``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import strawberry

from schema.analysis_types import (
    Analysis,
    AnalysisChunk,
    AnalysisConnection,
    AnalysisEdge,
    AnalysisPreferences,
    AnalysisStyle,
    RiskTolerance,
)
from schema.context import Info
from schema.orders import order_of
from schema.pagination import PageInfo
from schema.scalars import uuid_argument
from schema.subscription_quota import admit_subscription, releaser
from schema.trading import Order
from server.analysis.errors import AnalysisNotFound
from server.analysis.run import AnalysisRun
from server.analysis.service import AnalysisService

log = logging.getLogger(__name__)

#: Where an order placed from an idea comes from (``Order.source``).
SOURCE = "analysis"


def _service(info: Info) -> AnalysisService:
    service = info.context.services.analysis
    assert service is not None
    return service


def _user_id(info: Info) -> uuid.UUID:
    return info.context.caller.user().user_id


class ChunkStream:
    """One admitted analysis as the subscription's source stream.

    ``aclose`` (strawberry calls it when the client completes or disconnects) closes the
    run's generator, which closes the analyst's stream. A stream that is dropped before
    its first chunk was asked for (the client completed at once) never entered the
    run's generator, so closing that does nothing: the run is abandoned instead, so it
    does not hold a place in the quota until it goes stale. The subscription's lease
    is given back either way, once.
    """

    def __init__(self, run: AnalysisRun, release: Callable[[], None]) -> None:
        self._run = run
        self._chunks = run.chunks()
        self._release: Callable[[], None] | None = release
        self._started = False

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> AnalysisChunk:
        self._started = True
        try:
            chunk = await self._chunks.__anext__()
        except BaseException:
            self._end()
            raise
        return AnalysisChunk.of(self._run.id, chunk)

    async def aclose(self) -> None:
        try:
            if not self._started:
                self._started = True
                self._run.abandon()
            await self._chunks.aclose()
        finally:
            self._end()

    def _end(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __del__(self) -> None:
        # Never iterated nor closed (the operation died between its resolver and its
        # first step): the run must still give its place back.
        if not self._started:
            self._started = True
            with contextlib.suppress(RuntimeError):  # no running loop: exiting anyway
                self._run.abandon()
        self._end()


async def _stream(info: Info, symbol: str | None, question: str | None) -> ChunkStream:
    service = _service(info)
    caller = info.context.caller
    user_id = caller.user().user_id
    lease = await admit_subscription(info, [])
    release = releaser(lease)
    try:
        run = await service.start(
            user_id=user_id, limits=caller.limits, symbol=symbol, question=question
        )
    except BaseException:
        release()
        raise
    return ChunkStream(run, release)


@strawberry.type
class AnalysisSubscription:
    @strawberry.subscription(
        description="Analyze a symbol, grounded in its live numbers, your position, orders, "
        "alerts and preferences: the prose streams as it is written, then the checked "
        "result and the snapshot it is based on, then the usage. Counts against your daily "
        "quota (not when it fails or is served from the cache). Completing the operation "
        "stops the analyst at once."
    )
    async def analysis(
        self, info: Info, symbol: str, question: str | None = None
    ) -> AsyncIterator[AnalysisChunk]:
        return await _stream(info, symbol, question)

    @strawberry.subscription(
        description="Review your whole portfolio (every position, the account's equity and "
        "exposure), streamed like `analysis`. A review carries no trade idea."
    )
    async def portfolio_review(
        self, info: Info, question: str | None = None
    ) -> AsyncIterator[AnalysisChunk]:
        return await _stream(info, None, question)


@strawberry.type
class AnalysisQuery:
    @strawberry.field(
        description="One of your analyses (running, completed or failed); null if you have "
        "none with this id."
    )
    async def analysis(self, info: Info, id: strawberry.ID) -> Analysis | None:
        try:
            found = await _service(info).get(
                user_id=_user_id(info), analysis_id=uuid_argument(id, "an analysis id")
            )
        except AnalysisNotFound:
            return None
        return Analysis.of(found)

    @strawberry.field(
        description="Your analyses, newest first: `first` (1-100) after the `after` cursor. "
        "Completed ones only, unless `includeFailed` (then failed and cancelled ones too)."
    )
    async def analyses(
        self,
        info: Info,
        after: str | None = None,
        first: int = 20,
        include_failed: bool = False,
    ) -> AnalysisConnection:
        page = await _service(info).history(
            user_id=_user_id(info), after=after, first=first, include_failed=include_failed
        )
        return AnalysisConnection(
            edges=[AnalysisEdge(cursor=a.cursor, node=Analysis.of(a)) for a in page.items],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )


@strawberry.type
class AnalysisMutation:
    @strawberry.mutation(
        description="For clients without subscriptions: start an analysis of `symbol` (or, "
        "without one, a review of your portfolio) and return it at once, RUNNING; read it "
        "with `analysis(id)` until it is COMPLETED or FAILED. Same quota as the "
        "subscriptions."
    )
    async def request_analysis(
        self, info: Info, symbol: str | None = None, question: str | None = None
    ) -> Analysis:
        service = _service(info)
        caller = info.context.caller
        user_id = caller.user().user_id
        analysis_id = await service.request(
            user_id=user_id, limits=caller.limits, symbol=symbol, question=question
        )
        return Analysis.of(await service.get(user_id=user_id, analysis_id=analysis_id))

    @strawberry.mutation(
        description="State your trading style and risk tolerance (null: not stated). The "
        "style picks the bars an analysis reads first; the tolerance sizes trade ideas "
        "(the loss at the stop at most 0.5%, 1% or 2% of equity)."
    )
    async def set_analysis_preferences(
        self,
        info: Info,
        style: AnalysisStyle | None = None,
        risk_tolerance: RiskTolerance | None = None,
    ) -> AnalysisPreferences:
        wanted = AnalysisPreferences(style=style, risk_tolerance=risk_tolerance)
        stored = await _service(info).set_preferences(
            user_id=_user_id(info), preferences=wanted.value()
        )
        return AnalysisPreferences.of(stored)

    @strawberry.mutation(
        description="Place the trade idea of one of your analyses as a bracket order: a limit "
        "entry at the idea's entry, a take-profit at its target, a stop-loss at its stop. "
        "Without `qty`, it is sized by your risk tolerance against your equity. The order "
        "goes through every risk check, like placeOrder; `confirm` accepts an entry far "
        "from the last trade. One order per analysis: a retry returns the same order "
        "(pass another `idempotencyKey` to place the idea again)."
    )
    async def place_order_from_idea(
        self,
        info: Info,
        analysis_id: strawberry.ID,
        qty: Decimal | None = None,
        confirm: bool = False,
        idempotency_key: str | None = None,
    ) -> Order:
        orders = info.context.services.orders
        assert orders is not None
        caller = info.context.caller
        principal = caller.user()
        ident = uuid_argument(analysis_id, "an analysis id")
        doc: dict[str, Any] = await _service(info).order_from_idea(
            user_id=principal.user_id,
            analysis_id=ident,
            qty=qty,
            margin_multiplier=caller.limits.margin_multiplier,
        )
        records = await orders.place(
            str(principal.user_id),
            caller.limits,
            doc,
            idempotency_key=idempotency_key or f"analysis:{ident}",
            confirm=confirm,
            source=SOURCE,
        )
        return order_of(records[0])
