"""How a compiled plan gets a field's value from its parent: decided once per field.

graphql-core calls every field's resolver with a freshly built ``GraphQLResolveInfo``
and its arguments coerced anew. For most fields of a strawberry schema that call ends
in ``getattr(source, python_name)`` (a "basic" field), or in a plain method of the type
that needs neither info nor arguments (``Quote.midPrice``); the plan does exactly that
and nothing else. Anything it cannot prove equivalent (field extensions, permission
classes, resolvers that take info or arguments, exception handlers, fields that are
not strawberry's) is called the way graphql-core calls it, with a real info object
and the arguments coerced once (``Generic``): exact, only slower. An asynchronous
strawberry resolver makes the whole operation ineligible (``Unsupported``).
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLField, GraphQLObjectType, GraphQLSchema, TypeNameMetaFieldDef
from graphql.execution.collect_fields import FieldDetails
from graphql.execution.values import get_argument_values


class Unsupported(Exception):
    """The operation cannot be compiled; graphql-core executes it instead."""


@dataclass(frozen=True, slots=True)
class RootValue:
    """A strawberry subscription field: the event is the field's value."""


@dataclass(frozen=True, slots=True)
class TypeName:
    name: str


@dataclass(frozen=True, slots=True)
class Attribute:
    """``getattr(source, name)`` (or the schema's own default resolver)."""

    name: str
    getter: Callable[[Any, str], Any] = builtins.getattr

    @property
    def inline(self) -> bool:
        """Can be written ``source.name`` in the generated code."""
        return (
            self.getter is builtins.getattr
            and self.name.isidentifier()
            and not keyword.iskeyword(self.name)
        )


@dataclass(frozen=True, slots=True)
class Method:
    """A plain synchronous resolver of a strawberry type, called with the source only."""

    call: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Generic:
    """The field's resolver called as graphql-core calls it."""

    args: dict[str, Any]


Resolution = RootValue | TypeName | Attribute | Method | Generic


def signature_of(resolution: Resolution) -> Hashable | None:
    """What makes two resolutions equal for every source (``None``: depends on more,
    e.g. the info object, so results cannot be shared between groups)."""
    if isinstance(resolution, RootValue):
        return ("root",)
    if isinstance(resolution, TypeName):
        return ("typename", resolution.name)
    if isinstance(resolution, Attribute):
        return ("attr", resolution.name, resolution.getter)
    if isinstance(resolution, Method):
        return ("method", resolution.call)
    return None


def _strawberry_field(field_def: GraphQLField) -> Any:
    from strawberry.schema.schema_converter import GraphQLCoreConverter

    return (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)


def _has_exception_handlers(strawberry_schema: Any) -> bool:
    converter = getattr(strawberry_schema, "schema_converter", None)
    return bool(getattr(converter, "exception_handlers", ()))


def resolution_of(
    schema: GraphQLSchema,
    parent_type: GraphQLObjectType,
    field_def: GraphQLField,
    details: list[FieldDetails],
    *,
    root: bool,
    strawberry_schema: Any,
    variable_values: Any,
    hide_suggestions: bool,
) -> Resolution:
    if field_def is TypeNameMetaFieldDef:
        return TypeName(parent_type.name)
    field = _strawberry_field(field_def)
    if field is not None:
        found = _strawberry_resolution(field, field_def, root=root, schema=strawberry_schema)
        if found is not None:
            return found
    first = details[0]
    try:
        args = (
            get_argument_values(
                field_def,
                first.node,
                variable_values,
                first.fragment_variable_values,
                hide_suggestions,
            )
            if field_def.args or first.node.arguments
            else {}
        )
    except Exception as exc:  # graphql-core would fail this field on every event
        raise Unsupported(f"arguments of {parent_type.name}.{first.node.name.value}") from exc
    return Generic(args)


def _strawberry_resolution(
    field: Any, field_def: GraphQLField, *, root: bool, schema: Any
) -> Resolution | None:
    from strawberry.types.field import StrawberryField

    if getattr(field, "is_async", False) and not getattr(field, "is_subscription", False):
        raise Unsupported(f"{field.python_name} resolves asynchronously")
    resolve = field_def.resolve
    if getattr(field, "is_subscription", False):
        # strawberry resolves a subscription field's events with ``lambda event: event``.
        if root and resolve is not None and resolve.__name__ == "<lambda>":
            return RootValue()
        return None
    if type(field) is not StrawberryField or field.extensions or _has_exception_handlers(schema):
        return None
    if resolve is None:
        return None
    if field.base_resolver is None:
        # strawberry's ``_get_basic_result``: ``field.get_result`` -> default resolver.
        if resolve.__name__ != "_get_basic_result":
            return None
        return Attribute(field.python_name, field.default_resolver)
    resolver = field.base_resolver
    if (
        field.arguments
        or resolver.info_parameter is not None
        or not callable(resolver.wrapped_func)
        or field_def.args
    ):
        return None
    return Method(_method_call(resolver))


def _method_call(resolver: Any) -> Callable[[Any], Any]:
    """``field.get_result(source, info, args, kwargs)`` for a resolver that takes no
    arguments and no info: self, root and parent are the source."""
    func = resolver.wrapped_func
    names = [p.name for p in (resolver.root_parameter, resolver.parent_parameter) if p]
    if resolver.self_parameter is not None and not names:
        return func  # type: ignore[no-any-return]

    def call(source: Any) -> Any:
        args = (source,) if resolver.self_parameter is not None else ()
        return func(*args, **dict.fromkeys(names, source))

    return call
