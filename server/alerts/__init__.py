"""Price and indicator alerts: the model, validation, semantics and the indexed engine.

Pure and synchronous (no I/O): the market pipeline feeds events in, the engine hands
``Fired`` records out, and the service layer stores and delivers them.

- ``model``: definitions (``Alert``, ``Condition``, ``Trigger``...), ``Fired``,
  ``FireState``, ``InvalidAlert``.
- ``validation``: ``validate(definition, ...)`` -> ``Alert``.
- ``conditions``: the semantics contract (operators, ties, edges, AND, trigger modes).
- ``index``: the sorted threshold index with its "nothing can change" bracket.
- ``engine``: ``AlertEngine``.
- ``naive``: ``NaiveEngine``, the loop-over-everything reference.
"""

from server.alerts.engine import AlertEngine, AlertStatus, RequirementChanges
from server.alerts.model import (
    Alert,
    Channel,
    Condition,
    ConditionValues,
    Fired,
    FireState,
    IndicatorKey,
    IndicatorOperand,
    InvalidAlert,
    Movement,
    Operator,
    PriceSource,
    Trigger,
    TriggerMode,
)
from server.alerts.validation import validate, validate_alert

__all__ = [
    "Alert",
    "AlertEngine",
    "AlertStatus",
    "Channel",
    "Condition",
    "ConditionValues",
    "FireState",
    "Fired",
    "IndicatorKey",
    "IndicatorOperand",
    "InvalidAlert",
    "Movement",
    "Operator",
    "PriceSource",
    "RequirementChanges",
    "Trigger",
    "TriggerMode",
    "validate",
    "validate_alert",
]
