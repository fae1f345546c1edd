"""The GraphQL executor, with one fix for long-lived subscriptions.

graphql-core 3.3 runs each subscription event on a shallow copy of the subscription's
executor, so every event shares one memo of collected subfields. The memo is keyed by
the identity of lists each event creates anew (and keeps those lists alive), so it
grows by an entry per event for as long as the subscription lives: with a thousand
subscribers at a hundred events a second, that is a hundred thousand entries a second
of memory that is never given back. A fresh memo per event keeps it bounded (the memo
only pays off within one execution anyway), which is what graphql-core 3.2 did by
building a new context per event.
"""

from __future__ import annotations

from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class PerEventMemoExecutor(StrawberryGraphQLCoreExecutionContext):
    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor
