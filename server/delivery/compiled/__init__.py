"""Compiled selection plans: a subscription group's operation executed per event
without graphql-core's per-event field collection, argument coercion and info objects,
with the same result, byte for byte (``tests/server/delivery/test_compiled_exactness``)."""

from server.delivery.compiled.plan import Plan, compile_plan
from server.delivery.compiled.resolution import Unsupported
from server.delivery.compiled.runtime import Abandon

__all__ = ["Abandon", "Plan", "Unsupported", "compile_plan"]
