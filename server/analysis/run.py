"""One admitted analysis, performed: snapshot, cache, analyst, check, store, stream.

See ``server.analysis.service`` for the order of things and what is charged. A run is
performed once, by iterating ``chunks()``; the row it was admitted with is finished
exactly once, whatever happens (completed, failed, cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Coroutine
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from server.analysis import snapshot as snap
from server.analysis.anthropic_analyst import end_user_id
from server.analysis.check import checked_result
from server.analysis.errors import AnalysisInvalid, AnalystUnavailable
from server.analysis.offline import deltas
from server.analysis.port import AnalysisRequest, Analyst
from server.analysis.result import (
    AnalysisResult,
    Assessment,
    Chunk,
    ResultReady,
    TextDelta,
    Usage,
)
from server.analysis.snapshot import Snapshot, SymbolSnapshot
from server.analysis.stats import AnalysisStats
from server.errors import InvalidSymbol, TickgraphError
from server.storage import analyses as store
from server.storage.analyses import Status

log = logging.getLogger(__name__)


def question_key(question: str) -> str:
    """What makes two questions the same for the cache: case and spacing ignored."""
    return " ".join(question.split()).casefold()


class Host(Protocol):
    """What a run needs from the service that admitted it."""

    @property
    def pool(self) -> Any: ...

    @property
    def analyst(self) -> Analyst: ...

    @property
    def cache_ttl_s(self) -> float: ...

    @property
    def closing(self) -> bool: ...

    @property
    def stats(self) -> AnalysisStats: ...

    def now(self) -> datetime: ...

    async def snapshot(
        self, *, user_id: uuid.UUID, subject: str, margin_multiplier: Decimal = Decimal(1)
    ) -> Snapshot: ...

    def spawn(self, coro: Coroutine[Any, Any, None], *, run: bool = False) -> None: ...


class AnalysisRun:
    """One admitted analysis. ``chunks()`` performs it (once)."""

    def __init__(
        self,
        service: Host,
        analysis_id: uuid.UUID,
        user_id: uuid.UUID,
        subject: str,
        question: str,
        *,
        margin_multiplier: Decimal = Decimal(1),
    ) -> None:
        self.id = analysis_id
        self.user_id = user_id
        self.subject = subject
        self.question = question
        #: The caller's tier's, for the account's buying power in the snapshot.
        self.margin_multiplier = margin_multiplier
        self._service = service
        self._recorded = False
        self._wrote = False
        self._snapshot_json: bytes | None = None
        self._fingerprint: str | None = None
        self._admitted_ns = time.monotonic_ns()

    async def chunks(self) -> AsyncGenerator[Chunk, None]:
        service = self._service
        try:
            snapshot = await service.snapshot(
                user_id=self.user_id,
                subject=self.subject,
                margin_multiplier=self.margin_multiplier,
            )
            if isinstance(snapshot, SymbolSnapshot) and _has_no_data(snapshot):
                raise InvalidSymbol(
                    f"there is no market data for {self.subject} yet", symbol=self.subject
                )
            self._snapshot_json = snap.encode(snapshot)
            self._fingerprint = snap.fingerprint(snapshot)
            ttl = service.cache_ttl_s
            cached = (
                await store.find_cached(
                    service.pool,
                    subject=self.subject,
                    fingerprint=self._fingerprint,
                    question_key=question_key(self.question),
                    analyst=service.analyst.label,
                    since=service.now() - timedelta(seconds=ttl),
                )
                if ttl > 0
                else None
            )
            if cached is not None:
                async with contextlib.aclosing(self._replay(cached, snapshot)) as replay:
                    async for chunk in replay:
                        yield chunk
                return
            assessment, usage = None, None
            request = AnalysisRequest(snapshot, self.question, end_user_id(str(self.user_id)))
            async with contextlib.aclosing(service.analyst.analyze(request)) as stream:
                async for piece in stream:
                    if isinstance(piece, TextDelta):
                        self._wrote = True
                        yield piece
                    elif isinstance(piece, Assessment):
                        assessment = piece
                    elif isinstance(piece, Usage):
                        usage = piece
            if assessment is None or usage is None:
                raise AnalysisInvalid("the analyst ended without an answer", reason="incomplete")
            result = checked_result(assessment, snapshot, service.analyst.label)
            await self._finish(Status.COMPLETED, charged=True, result=result, usage=usage)
            yield ResultReady(str(self.id), result, snapshot, self._fingerprint)
            yield usage
        except (AnalystUnavailable, AnalysisInvalid) as exc:
            await self._fail(exc, exc.usage)
            raise
        except TickgraphError as exc:
            await self._fail(exc, None)
            raise
        except (GeneratorExit, asyncio.CancelledError):
            self._cancelled()
            raise
        except Exception as exc:
            log.exception("analysis %s failed", self.id)
            await self._fail(exc, None)
            raise

    def abandon(self) -> None:
        """The run will never be performed (its consumer went away before asking for
        the first chunk): recorded as cancelled, not charged, its place given back."""
        self._cancelled()

    async def _replay(
        self, cached: AnalysisResult, snapshot: Snapshot
    ) -> AsyncGenerator[Chunk, None]:
        """A cached answer, in the same chunks as a fresh one; it cost nothing."""
        usage = Usage(cached=True)
        await self._finish(Status.COMPLETED, charged=False, cached=True, result=cached, usage=usage)
        for piece in deltas(cached.rationale):
            yield TextDelta(piece)
        assert self._fingerprint is not None
        yield ResultReady(str(self.id), cached, snapshot, self._fingerprint)
        yield usage

    async def _finish(
        self,
        status: Status,
        *,
        charged: bool,
        cached: bool = False,
        result: AnalysisResult | None = None,
        usage: Usage | None = None,
        error: BaseException | None = None,
    ) -> None:
        self._recorded = True
        code = getattr(error, "code", "INTERNAL") if error is not None else None
        message = None
        if error is not None:
            message = error.message if isinstance(error, TickgraphError) else "internal error"
        # Only our own codes label the count (a foreign exception's ``code`` is anything).
        label = "none" if error is None else "INTERNAL"
        if isinstance(error, TickgraphError):
            label = error.code
        elapsed_ns = time.monotonic_ns() - self._admitted_ns
        self._service.stats.ended("cached" if cached else status.value, label, usage, elapsed_ns)
        await store.finish(
            self._service.pool,
            self.id,
            status=status,
            charged=charged,
            cached=cached,
            fingerprint=self._fingerprint,
            snapshot_json=self._snapshot_json,
            result=result,
            usage=usage,
            error_code=code,
            error_message=message,
        )

    async def _fail(self, exc: BaseException, usage: Usage | None) -> None:
        if self._recorded:
            return
        try:
            await self._finish(Status.FAILED, charged=False, usage=usage, error=exc)
        except Exception:
            log.exception("could not record the failure of analysis %s", self.id)

    def _cancelled(self) -> None:
        """Record the cancellation in the background: the consumer is gone and must not
        wait for the database (nor may a second cancellation lose the record)."""
        if self._recorded:
            return
        self._recorded = True
        self._service.stats.ended(Status.CANCELLED.value, "CANCELLED", None, None)
        # Charged when the analyst had started writing, unless the server is shutting down.
        charged = self._wrote and not self._service.closing

        async def record() -> None:
            try:
                await store.finish(
                    self._service.pool,
                    self.id,
                    status=Status.CANCELLED,
                    charged=charged,
                    fingerprint=self._fingerprint,
                    snapshot_json=self._snapshot_json,
                    error_code="CANCELLED",
                    error_message="the client stopped listening",
                )
            except Exception:
                log.exception("could not record the cancellation of analysis %s", self.id)

        self._service.spawn(record())


def _has_no_data(snapshot: SymbolSnapshot) -> bool:
    return (
        snapshot.trade is None
        and snapshot.quote is None
        and not any(s.bars for s in snapshot.series)
    )
