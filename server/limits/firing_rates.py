"""How often an alert may fire, and a user's alerts together: the tier's firing rates.

Pure arithmetic on a wall clock passed in (GCRA, ``server.limits.gcra``), one bucket per
alert and one per owner; a firing is delivered only when both allow it, and then it
consumes from both. A firing that ends its alert (ONCE) is always delivered: it can
happen only once, and suppressing it would lose it for good. Suppressed firings are
counted per alert and handed to the next delivered firing of that alert, so a reader
sees how many it did not get. State is one integer per alert and per owner.
"""

from __future__ import annotations

from collections.abc import Callable

from server.limits.gcra import decide_interval, interval_us
from server.limits.tiers import FREE, TierLimits


class FiringRates:
    def __init__(self, limits_for: Callable[[str], TierLimits] = lambda _owner: FREE) -> None:
        #: The owner's tier limits (the alert service keeps this current).
        self.limits_for = limits_for
        self._alert_tat: dict[str, int] = {}
        self._owner_tat: dict[str, int] = {}
        self._pending: dict[str, int] = {}  # suppressed since the last delivered firing
        self.suppressed = 0

    def admit(self, alert_id: str, owner: str, now_us: int, *, ends_alert: bool) -> int | None:
        """``None``: suppress this firing. Otherwise deliver it, carrying the returned
        number of this alert's firings suppressed since its previous delivered one."""
        limits = self.limits_for(owner)
        a = decide_interval(
            self._alert_tat.get(alert_id),
            now_us,
            interval_us(limits.alert_firings_per_second),
            limits.alert_firing_burst,
        )
        u = decide_interval(
            self._owner_tat.get(owner),
            now_us,
            interval_us(limits.user_firings_per_second),
            limits.user_firing_burst,
        )
        if not (a.allowed and u.allowed) and not ends_alert:
            self._pending[alert_id] = self._pending.get(alert_id, 0) + 1
            self.suppressed += 1
            return None
        if a.allowed:
            self._alert_tat[alert_id] = a.new_tat
        if u.allowed:
            self._owner_tat[owner] = u.new_tat
        return self._pending.pop(alert_id, 0)

    def forget(self, alert_id: str) -> None:
        """The alert is gone: drop its state."""
        self._alert_tat.pop(alert_id, None)
        self._pending.pop(alert_id, None)
