"""What a compiled plan calls while it runs: the rare paths, kept out of the generated
code so that the common path stays a few bytecodes per field.

Everything here reproduces one step of graphql-core's executor (3.3) exactly, usually
by calling the very function graphql-core calls (``located_error``,
``Executor.complete_leaf_value``, ``ensure_valid_runtime_type``...), so that errors
have the same messages, locations and paths. Where graphql-core would go
asynchronous (a resolver returned an awaitable, a list is an async iterable), the
plan raises ``Abandon`` and the caller executes that event with graphql-core itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from types import CoroutineType, GeneratorType
from typing import Any, Final

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    located_error,
)
from graphql.execution.collect_fields import FieldDetails
from graphql.execution.executor import Executor, invalid_return_type_error
from graphql.pyutils import Path, Undefined, is_awaitable, is_iterable

#: A list index in a path template; the actual indices travel with the value.
INDEX = None

#: A path template: (response key or INDEX, parent type name) from the root down.
Template = tuple[tuple[str | None, str | None], ...]


class Abandon(BaseException):
    """graphql-core would execute this event asynchronously: hand it over.

    A ``BaseException`` so the generated ``except Exception`` of a field never
    catches it."""


#: Classes whose instances are neither awaitables nor exceptions: a value of one needs
#: no further check before completion. (graphql-core tests ``__await__`` on the value;
#: an instance attribute of that name is not honoured by ``await`` either.)
PLAIN_CLASSES: set[type] = {str, int, float, bool, list, tuple, dict}


def check_value(value: Any) -> None:
    """What graphql-core checks before completing a non-null value of an unknown class:
    an awaitable is executed asynchronously (``Abandon``), an exception instance is
    raised as the field's error."""
    if is_awaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: say so quietly, not with a warning
        raise Abandon
    if isinstance(value, Exception):
        raise value
    cls = value.__class__
    if not (
        issubclass(cls, BaseException | CoroutineType | GeneratorType) or hasattr(cls, "__await__")
    ):
        PLAIN_CLASSES.add(cls)


#: One execution of a plan, passed down the generated functions: the root value, the
#: errors so far, and the group's executor (for the rare calls that need a
#: ``GraphQLResolveInfo``). A tuple: it is made for every event.
Run = tuple[Any, list[GraphQLError], "Executor[Any] | None"]
ROOT: Final = 0
ERRORS: Final = 1
BASE: Final = 2


def event_executor(run: Run) -> Executor[Any]:
    """The per-event executor graphql-core would run this event with."""
    base = run[BASE]
    if base is None:
        raise Abandon  # a plan that needs one was run without the group's executor
    return base.build_per_event_executor(run[ROOT])


def path_list(template: Template, ix: Sequence[int]) -> list[str | int]:
    out: list[str | int] = []
    indices = iter(ix)
    for key, _typename in template:
        out.append(next(indices) if key is INDEX else key)
    return out


def path_of(template: Template, ix: Sequence[int]) -> Path | None:
    path: Path | None = None
    indices = iter(ix)
    for key, typename in template:
        path = Path(path, next(indices) if key is INDEX else key, typename)
    return path


def field_error_handler(
    nodes: list[FieldNode], template: Template, non_null: bool
) -> Callable[[Exception, tuple[int, ...], Run], None]:
    """graphql-core's ``handle_field_error`` for one field (or list item) position."""

    def handle(error: Exception, ix: tuple[int, ...], run: Run) -> None:
        located = located_error(error, nodes, path_list(template, ix))
        if non_null:
            raise located
        run[ERRORS].append(located)

    return handle


def null_error(parent_type: str, field_name: str) -> Callable[[], TypeError]:
    message = f"Cannot return null for non-nullable field {parent_type}.{field_name}."
    return lambda: TypeError(message)


def leaf_completer(
    leaf_type: GraphQLLeafType, non_null: bool, parent_type: str, field_name: str
) -> Callable[[Any], Any]:
    """Completes a leaf value the fast path of the generated code did not take."""
    complete = Executor.complete_leaf_value
    message = f"Cannot return null for non-nullable field {parent_type}.{field_name}."

    def leaf(value: Any) -> Any:
        if value is None or value is Undefined:
            if non_null:
                raise TypeError(message)
            return None
        if value.__class__ not in PLAIN_CLASSES:
            check_value(value)
        return complete(leaf_type, value)

    return leaf


def list_iterable(parent_type: str, field_name: str) -> Callable[[Any], Any]:
    """What graphql-core accepts as a list value, beyond a ``list`` or ``tuple``."""
    message = f"Expected Iterable, but did not find one for field '{parent_type}.{field_name}'."

    def iterable(value: Any) -> Any:
        if value.__class__ not in PLAIN_CLASSES:
            check_value(value)
        if hasattr(value, "__aiter__"):
            raise Abandon
        if not is_iterable(value):
            raise GraphQLError(message)
        return value

    return iterable


def resolve_info(
    executor: Executor[Any],
    field_def: GraphQLField,
    nodes: list[FieldNode],
    parent_type: GraphQLObjectType,
    at: tuple[Template, Sequence[int]],
) -> GraphQLResolveInfo[Any]:
    """The info graphql-core's executor (the schema's class) would build for the
    field at ``at`` (its path template and the list indices on the way)."""
    path = path_of(*at)
    assert path is not None  # a field's template is never empty
    return executor.build_resolve_info(field_def, nodes, parent_type, path)


def generic_resolver(
    field_def: GraphQLField,
    nodes: list[FieldNode],
    parent_type: GraphQLObjectType,
    template: Template,
    args: dict[str, Any],
) -> Callable[[Any, tuple[int, ...], Run], Any]:
    """Calls a field's resolver as graphql-core does, with a real info object."""

    def resolve(source: Any, ix: tuple[int, ...], run: Run) -> Any:
        executor = event_executor(run)
        info = resolve_info(executor, field_def, nodes, parent_type, (template, ix))
        resolve_fn = field_def.resolve or executor.field_resolver
        result = resolve_fn(source, info, **args)
        if is_awaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise Abandon
        return result

    return resolve


def type_checker(
    object_type: GraphQLObjectType,
    field_def: GraphQLField,
    details: list[FieldDetails],
    parent_type: GraphQLObjectType,
    template: Template,
) -> Callable[[Any, tuple[int, ...], Run], None]:
    """``complete_object_value``'s ``is_type_of`` check, for types that have one."""
    nodes = [d.node for d in details]
    is_type_of = object_type.is_type_of
    assert is_type_of is not None

    def check(value: Any, ix: tuple[int, ...], run: Run) -> None:
        info = resolve_info(event_executor(run), field_def, nodes, parent_type, (template, ix))
        verdict = is_type_of(value, info)
        if is_awaitable(verdict):
            if inspect.iscoroutine(verdict):
                verdict.close()
            raise Abandon
        if not verdict:
            raise invalid_return_type_error(object_type, value, details)

    return check


def runtime_typer(
    abstract: Any,
    field_def: GraphQLField,
    details: list[FieldDetails],
    parent_type: GraphQLObjectType,
    template: Template,
) -> Callable[[Any, tuple[int, ...], Run], str]:
    """``complete_abstract_value``: the name of the value's object type."""
    nodes = [d.node for d in details]

    def runtime_type(value: Any, ix: tuple[int, ...], run: Run) -> str:
        executor = event_executor(run)
        info = resolve_info(executor, field_def, nodes, parent_type, (template, ix))
        resolve_type = abstract.resolve_type or executor.type_resolver
        name = resolve_type(value, info, abstract)
        if is_awaitable(name):
            if inspect.iscoroutine(name):
                name.close()
            raise Abandon
        object_type = executor.ensure_valid_runtime_type(name, abstract, details, info, value)
        return str(object_type.name)

    return runtime_type
