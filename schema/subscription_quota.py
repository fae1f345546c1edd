"""What a subscription holds while it streams: a lease on its caller's tier quota
(concurrent subscriptions, distinct symbols), given back when it ends.

Who may subscribe at all is decided before the resolver runs, with every other root
field (``schema.access_policy``); the request was charged to the caller's rate before
its document was even parsed (``server.auth.access.AccessControl.count_request``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from schema.context import Info
from server.limits.usage import Lease


async def admit_subscription(info: Info, symbols: Sequence[str]) -> Lease | None:
    """Take a subscription (and its symbols) from the caller's tier quota, over every
    process of the deployment; ``LimitExceeded`` when the quota is used up."""
    context = info.context
    access = context.services.access
    if access is None:
        return None
    return await access.subscribe(context.caller, list(symbols))


def releaser(lease: Lease | None, *also: Callable[[], None]) -> Callable[[], None]:
    """What gives a subscriber's holds back when its subscription ends: the quota lease,
    then anything else it acquired (indicator slots...)."""

    def release() -> None:
        try:
            if lease is not None:
                lease.release()
        finally:
            for undo in also:
                undo()

    return release
