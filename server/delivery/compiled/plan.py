"""A compiled plan: an operation's selection turned into a function of the event.

``compile_plan`` takes the executor graphql-core built for a group (document,
operation, coerced variables, context) and returns a ``Plan`` whose ``execute(root)``
gives the same ``(data, errors)`` as ``executor.build_per_event_executor(root)
.execute_operation(False)``, without collecting fields, coercing arguments or building
an info object per field per event. It raises ``Unsupported`` for an operation it
cannot compile; ``Plan.execute`` raises ``Abandon`` for an event that graphql-core
would execute asynchronously. Either way the caller executes with graphql-core.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from graphql import GraphQLError
from graphql.execution.executor import Executor

from server.delivery.compiled.codegen import Emitter, compile_source
from server.delivery.compiled.runtime import Run
from server.delivery.compiled.tree import build_tree, resolutions, signature


class Plan:
    __slots__ = ("_root", "positions", "resolutions", "signature", "source")

    def __init__(self, executor: Executor[Any], strawberry_schema: Any = None) -> None:
        tree = build_tree(executor, strawberry_schema)
        emitter = Emitter()
        root = emitter.object_function(tree.root)
        namespace = dict(emitter.namespace)
        exec(compile_source(emitter.source), namespace)  # our own generated code (see codegen)
        for table, functions in emitter.dispatch_tables:
            namespace[table].update({name: namespace[fn] for name, fn in functions.items()})
        self._root = namespace[root]
        self.source = emitter.source
        self.positions = tree.positions
        self.resolutions = resolutions(tree)
        #: Equal for plans that give equal error-free results for every event (their
        #: documents may differ); ``None`` when results are this group's own.
        self.signature: Hashable | None = signature(tree)

    def execute(
        self, root: Any, executor: Executor[Any] | None = None
    ) -> tuple[dict[str, Any] | None, list[GraphQLError]]:
        """The event's ``(data, errors)``. ``executor`` is the group's (graphql-core's
        for this operation); only positions that call a resolver with an info object
        need it. A plan keeps none itself: it may be shared by groups whose contexts
        differ, when nothing in it can see the context."""
        errors: list[GraphQLError] = []
        run: Run = (root, errors, executor)
        try:
            data: dict[str, Any] | None = self._root(root, (), run)
        except GraphQLError as error:
            # A non-null root field failed: graphql-core's execute_operation does this.
            errors.append(error)
            data = None
        return data, errors


def compile_plan(executor: Executor[Any], strawberry_schema: Any = None) -> Plan:
    return Plan(executor, strawberry_schema)
