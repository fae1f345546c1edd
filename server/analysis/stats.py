"""What the analysis service did over this process's life, for ``/metrics``.

Kept by the service as plain counters (an analysis is rare next to market events, but
the rule is the same everywhere: the client library is only read at scrape time).
Every label comes from a closed set: admission outcomes, ``Status`` values, error
codes of ``server.errors`` (a failure that is not ours is ``INTERNAL``).
"""

from __future__ import annotations

from decimal import Decimal

from server.analysis.result import Usage
from server.observability.histogram import LatencyHistogram

#: Token kinds as the provider bills them.
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


class AnalysisStats:
    __slots__ = ("cost_usd", "duration", "finished", "requests", "tokens")

    def __init__(self) -> None:
        #: Requests by admission: ``admitted``, ``quota`` (daily limit used up),
        #: ``concurrency`` (too many at once), ``not_included`` (the tier has none).
        self.requests: dict[str, int] = {}
        #: Ends by (status, error code or "none"): completed (fresh or ``cached``), failed,
        #: cancelled.
        self.finished: dict[tuple[str, str], int] = {}
        self.tokens: dict[str, int] = dict.fromkeys(TOKEN_KINDS, 0)
        #: Estimated cost of the tokens, in US dollars (exact: a Decimal sum).
        self.cost_usd = Decimal(0)
        #: Admission to the end of a run, completed or failed.
        self.duration = LatencyHistogram()

    def requested(self, outcome: str) -> None:
        self.requests[outcome] = self.requests.get(outcome, 0) + 1

    def ended(self, status: str, code: str, usage: Usage | None, elapsed_ns: int | None) -> None:
        key = (status, code)
        self.finished[key] = self.finished.get(key, 0) + 1
        if usage is not None and not usage.cached:
            tokens = self.tokens
            tokens["input"] += usage.input_tokens
            tokens["output"] += usage.output_tokens
            tokens["cache_read"] += usage.cache_read_tokens
            tokens["cache_write"] += usage.cache_write_tokens
            if usage.cost_usd is not None:
                self.cost_usd += usage.cost_usd
        if elapsed_ns is not None:
            self.duration.record_ns(elapsed_ns)
