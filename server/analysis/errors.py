"""The errors of an analysis, each with its stable ``extensions.code``.

- ``ANALYST_UNAVAILABLE``: the analyst could not answer (the provider was slow, rate
  limited, overloaded, cut the stream, or refused our credentials). ``retryAfter``
  (seconds) is set when the provider said how long to wait. The user's daily quota is
  not charged.
- ``ANALYSIS_INVALID``: the analyst answered, but the answer is not a valid analysis
  (its structured part does not validate against the result schema, was cut off at
  the token limit, or was refused). It is reported as such, never repaired.
- ``NOT_FOUND``: no analysis with that id belongs to the caller.
- ``IDEA_NOT_ACTIONABLE``: an order was asked for from an analysis whose trade idea is
  missing or failed the consistency check.
"""

from __future__ import annotations

from server.analysis.result import Usage
from server.errors import InvalidInput, TickgraphError, Unavailable


class AnalystUnavailable(Unavailable):
    code = "ANALYST_UNAVAILABLE"

    def __init__(self, message: str, *, reason: str, retry_after_s: float | None = None) -> None:
        extensions: dict[str, object] = {"reason": reason}
        if retry_after_s is not None:
            extensions["retryAfter"] = retry_after_s
        super().__init__(message, **extensions)
        self.reason = reason
        self.retry_after_s = retry_after_s
        #: Tokens the provider reported before it failed (recorded, never charged).
        self.usage: Usage | None = None


class AnalysisInvalid(TickgraphError):
    code = "ANALYSIS_INVALID"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason
        #: What the invalid answer cost (recorded; the user's quota is not charged).
        self.usage: Usage | None = None


class AnalysisNotFound(TickgraphError):
    code = "NOT_FOUND"


class IdeaNotActionable(InvalidInput):
    code = "IDEA_NOT_ACTIONABLE"
