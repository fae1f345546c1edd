"""Analyses as a use case: admit, snapshot, answer (or serve from cache), check, store,
stream.

One analysis, in order:

1. **Admit** (``start``): the question is checked (at most 1,000 characters), the symbol
   resolved, and the user's daily quota taken in PostgreSQL: the tier's
   ``analyses_per_day`` counts charged analyses since 00:00 UTC plus the ones running
   now, and at most ``max_running`` run at once per user. The analysis row is written
   as ``running`` (``server.storage.analyses.reserve``). A refusal raises before anything
   else is done: ``LIMIT_EXCEEDED`` (the tier includes none, or too many at once) or
   ``RATE_LIMITED`` with ``retryAfter`` (used up for today).
2. **Snapshot** (``server.analysis.gather``): the inputs are gathered (market state,
   closed bars on the style's two timeframes, position, orders, alerts, news) and the
   snapshot built, once. Steps 2-6 are one ``AnalysisRun`` (``server.analysis.run``).
3. **Cache**: a completed answer for the same subject, snapshot fingerprint, question and
   analyst younger than ``cache_ttl_s`` is served again (stored in PostgreSQL, so every
   process shares it): the same chunks, ``cached: true``, no tokens, not charged.
4. **Analyst**: its text deltas are passed on as they arrive; its assessment is
   checked (``server.analysis.check``); the result is stored with the snapshot and the
   usage, and only then streamed, followed by the usage.
5. **Failure** (``ANALYST_UNAVAILABLE``, ``ANALYSIS_INVALID``, no data for the symbol,
   anything unexpected): the row is marked failed with what it cost, the quota is not
   charged, and the error is raised to the consumer.
6. **Cancellation**: when the consumer stops iterating, the analyst's stream is closed at
   once (for the Anthropic analyst: the HTTP stream, so no more tokens are generated),
   and the row is marked cancelled in the background. It is charged if the analyst had
   already started writing (so starting and abandoning analyses is not a way around
   the quota), and not otherwise; nor when the server's shutdown stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from server.analysis.bracket import bracket_order, suggested_qty
from server.analysis.errors import (
    AnalysisNotFound,
    IdeaNotActionable,
)
from server.analysis.gather import PORTFOLIO, SnapshotGatherer
from server.analysis.inputs import NO_HOLDINGS, AlertsSource, Holdings, MarketInputs, NewsSource
from server.analysis.port import Analyst
from server.analysis.prompt import MAX_QUESTION_CHARS
from server.analysis.result import (
    Chunk,
)
from server.analysis.run import AnalysisRun, question_key
from server.analysis.snapshot import (
    Preferences,
    Snapshot,
    SymbolSnapshot,
)
from server.analysis.stats import AnalysisStats
from server.errors import InvalidInput, InvalidSymbol, LimitExceeded
from server.limits.errors import RateLimited
from server.limits.tiers import TierLimits
from server.market.symbols import SYMBOL_PATTERN
from server.storage import analyses as store
from server.storage.analyses import Refusal, Status, StoredAnalysis

log = logging.getLogger(__name__)

MAX_PAGE = 100
#: How long shutdown waits for the last rows to be written.
CLOSE_TIMEOUT_S = 5.0
_DAY = timedelta(days=1)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class AnalysisSettings:
    #: How long an identical request is answered from the cache.
    cache_ttl_s: float = 60.0
    #: The longest an analysis may run; a ``running`` row older than this plus a margin
    #: belongs to a process that died and stops holding a place in the quota.
    timeout_s: float = 120.0
    max_running: int = 2
    #: Wall-clock time a trade may be old and still count as live.
    stale_after_s: float = 10.0


@dataclass(frozen=True, slots=True)
class UsageToday:
    """``me { usage }``: today's analyses (UTC day) against the tier's quota, and tokens."""

    analyses_used: int
    analyses_limit: int
    analyses_remaining: int
    cached: int
    failed: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal
    resets_at: datetime


@dataclass(frozen=True, slots=True)
class AnalysisPage:
    items: list[StoredAnalysis]
    end_cursor: str | None
    has_next_page: bool


def clean_question(question: str | None) -> str:
    text = _CONTROL.sub(" ", question or "").strip()
    if len(text) > MAX_QUESTION_CHARS:
        raise InvalidInput(
            f"a question may have at most {MAX_QUESTION_CHARS} characters, this one has "
            f"{len(text)}",
            field="question",
        )
    return text


class AnalysisService:
    def __init__(
        self,
        *,
        pool: Any,
        analyst: Analyst,
        market: MarketInputs,
        holdings: Holdings = NO_HOLDINGS,
        alerts: AlertsSource | None = None,
        news: NewsSource | None = None,
        resolve_symbol: Callable[[str], str] | None = None,
        settings: AnalysisSettings = AnalysisSettings(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._analyst = analyst
        self._holdings = holdings
        self._gather = SnapshotGatherer(
            pool=pool,
            market=market,
            holdings=holdings,
            alerts=alerts,
            news=news,
            stale_after_s=settings.stale_after_s,
            clock=clock,
        )
        self._resolve = resolve_symbol or _syntax_only
        self.settings = settings
        self._clock = clock
        self._runs: set[asyncio.Task[None]] = set()
        self._records: set[asyncio.Task[None]] = set()
        self._closing = False
        #: Requests, ends, tokens and durations over this process's life (/metrics).
        self.stats = AnalysisStats()

    # What a run needs (``server.analysis.run.Host``).

    @property
    def pool(self) -> Any:
        return self._pool

    @property
    def analyst(self) -> Analyst:
        return self._analyst

    @property
    def cache_ttl_s(self) -> float:
        return self.settings.cache_ttl_s

    @property
    def closing(self) -> bool:
        return self._closing

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    async def snapshot(
        self, *, user_id: uuid.UUID, subject: str, margin_multiplier: Decimal = Decimal(1)
    ) -> Snapshot:
        """The snapshot a request about ``subject`` (a symbol or "portfolio") would get."""
        return await self._gather.snapshot(
            user_id=user_id, subject=subject, margin_multiplier=margin_multiplier
        )

    # ------------------------------------------------------------------ streaming

    async def start(
        self,
        *,
        user_id: uuid.UUID,
        limits: TierLimits,
        symbol: str | None,
        question: str | None = None,
    ) -> AnalysisRun:
        """Admit one analysis (of ``symbol``, or a portfolio review when ``None``) and
        take its place in the quota. Iterate ``run.chunks()`` to perform it."""
        text = clean_question(question)
        subject = self._resolve(symbol) if symbol is not None else PORTFOLIO
        if limits.read_only or limits.analyses_per_day <= 0:
            self.stats.requested("not_included")
            raise LimitExceeded(
                f"the {limits.name} tier includes no analyses", resource="analyses", limit=0
            )
        now = self.now()
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        analysis_id = uuid.uuid4()
        reservation = await store.reserve(
            self._pool,
            analysis_id=analysis_id,
            user_id=user_id,
            subject=subject,
            question=text,
            question_key=question_key(text),
            analyst=self.analyst.label,
            limit=limits.analyses_per_day,
            max_running=self.settings.max_running,
            day_start=day_start,
            stale_before=now - timedelta(seconds=self.settings.timeout_s + 60),
            now=now,
        )
        if reservation.refused is Refusal.CONCURRENCY:
            self.stats.requested("concurrency")
            raise LimitExceeded(
                f"at most {self.settings.max_running} analyses may run at once; wait for "
                "one to finish",
                resource="concurrent_analyses",
                limit=self.settings.max_running,
                current=reservation.running,
            )
        if reservation.refused is Refusal.QUOTA:
            self.stats.requested("quota")
            raise RateLimited(
                f"the daily limit of {limits.analyses_per_day} analyses is used up"
                + (" (some are still running)" if reservation.running else "")
                + "; it resets at 00:00 UTC",
                retry_after_s=(day_start + _DAY - now).total_seconds(),
                kind="analyses",
                tier=limits.name,
                scope="analyses",
                limit=limits.analyses_per_day,
            )
        self.stats.requested("admitted")
        return AnalysisRun(
            self, analysis_id, user_id, subject, text, margin_multiplier=limits.margin_multiplier
        )

    async def stream(
        self,
        *,
        user_id: uuid.UUID,
        limits: TierLimits,
        symbol: str | None,
        question: str | None = None,
    ) -> AsyncGenerator[Chunk, None]:
        """``start`` and ``chunks`` in one generator: what a subscription resolver returns.
        Closing it early cancels the analysis (see the module's docstring)."""
        run = await self.start(user_id=user_id, limits=limits, symbol=symbol, question=question)
        async with contextlib.aclosing(run.chunks()) as chunks:
            async for chunk in chunks:
                yield chunk

    async def request(
        self,
        *,
        user_id: uuid.UUID,
        limits: TierLimits,
        symbol: str | None,
        question: str | None = None,
    ) -> uuid.UUID:
        """For clients without subscriptions: admit the analysis, run it in the
        background, and return its id at once (``get`` shows its progress and result)."""
        run = await self.start(user_id=user_id, limits=limits, symbol=symbol, question=question)

        async def drain() -> None:
            with contextlib.suppress(Exception):  # recorded on the row (and logged)
                async with contextlib.aclosing(run.chunks()) as chunks:
                    async for _ in chunks:
                        pass

        self.spawn(drain(), run=True)
        return run.id

    # ------------------------------------------------------------------ reads

    async def get(self, *, user_id: uuid.UUID, analysis_id: uuid.UUID) -> StoredAnalysis:
        found = await store.get(self._pool, user_id=user_id, analysis_id=analysis_id)
        if found is None:
            raise AnalysisNotFound(f"no analysis {analysis_id}", id=str(analysis_id))
        return found

    async def history(
        self,
        *,
        user_id: uuid.UUID,
        after: str | None = None,
        first: int = 20,
        include_failed: bool = False,
    ) -> AnalysisPage:
        """The user's analyses, newest first, ``first`` (1-100) after the cursor."""
        if not 1 <= first <= MAX_PAGE:
            raise InvalidInput(f"first must be between 1 and {MAX_PAGE}", field="first")
        statuses = (
            (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
            if include_failed
            else (Status.COMPLETED,)
        )
        items, more = await store.page(
            self._pool, user_id=user_id, after=after, first=first, statuses=statuses
        )
        return AnalysisPage(items, items[-1].cursor if items else None, more)

    async def usage(self, *, user_id: uuid.UUID, limits: TierLimits) -> UsageToday:
        now = self.now()
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        totals = await store.usage_since(self._pool, user_id=user_id, since=day_start)
        limit = 0 if limits.read_only else limits.analyses_per_day
        return UsageToday(
            analyses_used=totals.charged,
            analyses_limit=limit,
            analyses_remaining=max(0, limit - totals.charged),
            cached=totals.cached,
            failed=totals.failed,
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            cache_read_tokens=totals.cache_read_tokens,
            cache_write_tokens=totals.cache_write_tokens,
            cost_usd=totals.cost_usd,
            resets_at=day_start + _DAY,
        )

    async def preferences(self, *, user_id: uuid.UUID) -> Preferences:
        return await store.get_preferences(self._pool, user_id=user_id)

    async def set_preferences(self, *, user_id: uuid.UUID, preferences: Preferences) -> Preferences:
        if not await store.set_preferences(self._pool, user_id=user_id, preferences=preferences):
            raise AnalysisNotFound("no such user", id=str(user_id))
        return preferences

    async def order_from_idea(
        self,
        *,
        user_id: uuid.UUID,
        analysis_id: uuid.UUID,
        qty: Decimal | None = None,
        margin_multiplier: Decimal = Decimal(1),
    ) -> dict[str, object]:
        """The bracket order request for the analysis's trade idea, for the order service
        (which applies its risk checks; the user confirms). Without ``qty``, the idea is
        sized by the user's risk tolerance against the account's equity."""
        analysis = await self.get(user_id=user_id, analysis_id=analysis_id)
        result = analysis.result
        if result is None or result.trade_idea is None:
            raise IdeaNotActionable("this analysis has no trade idea")
        if result.check.idea_problems:
            raise IdeaNotActionable(
                "the trade idea failed its check: " + "; ".join(result.check.idea_problems)
            )
        if not isinstance(analysis.snapshot, SymbolSnapshot):
            raise IdeaNotActionable("a portfolio review has no trade idea")
        if qty is None:
            account = await self._holdings.account(user_id, margin_multiplier)
            tolerance = analysis.snapshot.preferences.risk_tolerance
            qty = (
                suggested_qty(result.trade_idea, account.equity, tolerance)
                if account is not None
                else None
            )
            if qty is None:
                raise IdeaNotActionable(
                    "no quantity: give one (the account's equity does not size even one share "
                    "at this idea's risk)"
                )
        return bracket_order(analysis.snapshot.symbol, result.trade_idea, qty)

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Shut down: analyses running in the background (``request``) are cancelled (and
        not charged: the server stopped them, not the user), then the rows still being
        recorded get a bounded time to be written."""
        self._closing = True
        runs = set(self._runs)
        for task in runs:
            task.cancel()
        if runs:
            await asyncio.wait(runs)
        if self._records:
            await asyncio.wait(set(self._records), timeout=CLOSE_TIMEOUT_S)

    def spawn(self, coro: Coroutine[Any, Any, None], *, run: bool = False) -> None:
        """Background work: an analysis (``run``) or the recording of one's end."""
        tasks = self._runs if run else self._records
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # ------------------------------------------------------------------ snapshots


def _syntax_only(raw: str) -> str:
    symbol = raw.strip().upper()
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise InvalidSymbol(f"{raw[:32]!r} is not a valid symbol", symbol=raw[:32])
    return symbol
