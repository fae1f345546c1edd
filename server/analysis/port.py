"""The ``Analyst`` port: one request in, a stream of chunks out.

An analyst yields, in this order: any number of ``TextDelta`` (the prose as it is
written), exactly one ``Assessment`` (the structured answer, validated), exactly one
``Usage``. It raises ``AnalystUnavailable`` when it cannot answer and
``AnalysisInvalid`` when its answer does not validate. When the consumer stops
iterating (``aclose``, or the task awaiting it is cancelled) the analyst stops at once
and releases what it holds (an HTTP stream is closed: no more tokens are generated).

Implementations: ``server.analysis.offline.OfflineAnalyst`` (rule-based, the default)
and ``server.analysis.anthropic_analyst.AnthropicAnalyst``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

import msgspec

from server.analysis.result import AnalystChunk
from server.analysis.snapshot import Snapshot


class AnalysisRequest(msgspec.Struct, frozen=True):
    snapshot: Snapshot
    #: The user's question ("" for a plain analysis), already length-checked.
    question: str = ""
    #: An opaque, stable id of the end user for the provider's abuse detection (a hash,
    #: never the user's id or email).
    end_user: str = ""


class Analyst(Protocol):
    #: "rule-based", or the model id: stored with every analysis and part of the cache key.
    @property
    def label(self) -> str: ...

    def analyze(self, request: AnalysisRequest) -> AsyncGenerator[AnalystChunk, None]: ...
