"""Python source for a compiled plan: one function per object selection.

The common path of every position is straight-line code: an attribute read, an exact
class test of the value against what its leaf type returns unchanged (a finite
``float`` for ``Float``, an ``int`` in 32-bit range for ``Int``, a member of the enum
for a strawberry enum...), and the response dict built in field order. Everything
else (nulls, other classes, custom scalars, exceptions, awaitables) goes through the
functions of ``server.delivery.compiled.runtime``, which do what graphql-core does.
A field's resolution and completion sit in one ``try``, like graphql-core's
``execute_field``: an error becomes a located error at that position, raised on to
the parent when the position is non-null, collected otherwise.

Nothing from the document is written into the source as code: response keys appear
as string literals (``repr``), every other constant (types, nodes, functions,
attribute names that are not plain identifiers) is bound by name in the namespace
the source is executed in. The source depends only on the plan's shape, so it is
compiled once per shape and shared.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from functools import lru_cache
from typing import Any

from graphql import GraphQLError, GraphQLLeafType
from graphql.pyutils import Undefined
from graphql.type.scalars import (
    serialize_boolean,
    serialize_float,
    serialize_id,
    serialize_int,
    serialize_string,
)

from server.delivery.compiled import runtime
from server.delivery.compiled.resolution import Attribute, Generic, Method, RootValue, TypeName
from server.delivery.compiled.tree import Abstract, Completion, Field, Leaf, ListOf, NonNull, Obj

_INT_RANGE = "-2147483648 <= {v} <= 2147483647"


class Emitter:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {
            "Undefined": Undefined,
            "PLAIN": runtime.PLAIN_CLASSES,
            "check": runtime.check_value,
            "GraphQLError": GraphQLError,
        }
        self._functions: list[str] = []
        self._names = 0
        #: (namespace name of a table, {object type name: function name}).
        self.dispatch_tables: list[tuple[str, dict[str, str]]] = []

    def bind(self, value: Any, prefix: str = "k") -> str:
        name = f"{prefix}{self._names}"
        self._names += 1
        self.namespace[name] = value
        return name

    def fresh(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    @property
    def source(self) -> str:
        return "\n\n".join(self._functions) + "\n"

    # --- objects ------------------------------------------------------------------

    def object_function(self, obj: Obj) -> str:
        name = self.fresh("o")
        body: list[str] = []
        if obj.checked_by is not None:
            f = obj.checked_by
            check = runtime.type_checker(
                obj.type, f.definition, f.details, f.parent_type, f.template
            )
            body.append(f"{self.bind(check, 't')}(src, ix, run)")
        entries: list[str] = []
        for f in obj.fields:
            var = self.fresh("v")
            body.extend(self.field(f, var))
            entries.append(f"{f.key!r}: {var}")
        body.append("return {" + ", ".join(entries) + "}")
        lines = [f"def {name}(src, ix, run):", *("    " + line for line in body)]
        self._functions.append("\n".join(lines))
        return name

    def field(self, f: Field, var: str) -> list[str]:
        res = f.resolution
        if isinstance(res, TypeName):
            return [f"{var} = {res.name!r}"]
        if isinstance(res, RootValue):
            get = "src"
        elif isinstance(res, Attribute):
            if res.inline:
                get = f"src.{res.name}"
            else:
                get = f"{self.bind(res.getter, 'g')}(src, {res.name!r})"
        elif isinstance(res, Method):
            get = f"{self.bind(res.call, 'm')}(src)"
        else:
            assert isinstance(res, Generic)
            resolver = runtime.generic_resolver(
                f.definition, f.nodes, f.parent_type, f.template, res.args
            )
            get = f"{self.bind(resolver, 'r')}(src, ix, run)"
        non_null = isinstance(f.completion, NonNull)
        handler = self.bind(runtime.field_error_handler(f.nodes, f.template, non_null), "h")
        lines = [f"{var} = {get}"]
        lines += self.complete(f.completion, var, f, "ix", non_null=False)
        return [
            "try:",
            *("    " + line for line in lines),
            "except Exception as e:",
            f"    {handler}(e, ix, run)",
            f"    {var} = None",
        ]

    # --- completion ---------------------------------------------------------------

    def complete(self, c: Completion, var: str, f: Field, ix: str, *, non_null: bool) -> list[str]:
        """Statements that turn the raw value in ``var`` into its completed value."""
        if isinstance(c, NonNull):
            return self.complete(c.inner, var, f, ix, non_null=True)
        if isinstance(c, Leaf):
            return self.leaf(c.type, var, f, non_null=non_null)
        if non_null:
            null = self.bind(runtime.null_error(f.parent_type.name, f.name), "n")
            on_null = [f"    raise {null}()"]
        else:
            on_null = [f"    {var} = None"]
        return [
            f"if {var} is None or {var} is Undefined:",
            *on_null,
            "else:",
            *("    " + line for line in self.non_null_value(c, var, f, ix)),
        ]

    def non_null_value(self, c: Completion, var: str, f: Field, ix: str) -> list[str]:
        if isinstance(c, ListOf):
            return self.list_value(c, var, f, ix)
        check = [f"if {var}.__class__ not in PLAIN:", f"    check({var})"]
        if isinstance(c, Obj):
            return [*check, f"{var} = {self.object_function(c)}({var}, {ix}, run)"]
        assert isinstance(c, Abstract)
        typer = runtime.runtime_typer(c.type, f.definition, f.details, f.parent_type, f.template)
        dispatch = {name: self.object_function(obj) for name, obj in c.by_name.items()}
        table = self.bind({}, "d")
        # The functions exist only once the source has run: the table is filled then.
        self.dispatch_tables.append((table, dispatch))
        return [
            *check,
            f"{var} = {table}[{self.bind(typer, 'y')}({var}, {ix}, run)]({var}, {ix}, run)",
        ]

    def list_value(self, c: ListOf, var: str, f: Field, ix: str) -> list[str]:
        iterable = self.bind(runtime.list_iterable(f.parent_type.name, f.name), "l")
        out, index, item = self.fresh("out"), self.fresh("i"), self.fresh("x")
        item_non_null = isinstance(c.item, NonNull)
        handler = runtime.field_error_handler(f.nodes, c.template, item_non_null)
        item_ix = f"{ix} + ({index},)"
        return [
            f"if {var}.__class__ is not list and {var}.__class__ is not tuple:",
            f"    {var} = {iterable}({var})",
            f"{out} = []",
            f"for {index}, {item} in enumerate({var}):",
            "    try:",
            *(
                "        " + line
                for line in self.complete(c.item, item, f, item_ix, non_null=False)
            ),
            "    except Exception as e:",
            f"        {self.bind(handler, 'h')}(e, {item_ix}, run)",
            f"        {item} = None",
            f"    {out}.append({item})",
            f"{var} = {out}",
        ]

    def leaf(self, leaf_type: GraphQLLeafType, var: str, f: Field, *, non_null: bool) -> list[str]:
        slow = self.bind(
            runtime.leaf_completer(leaf_type, non_null, f.parent_type.name, f.name), "s"
        )
        fast = self._fast_leaf(leaf_type, var)
        if fast is None:
            return [f"{var} = {slow}({var})"]
        if isinstance(fast, tuple):  # an enum: a table of its members' names
            cls, names = fast
            return [
                f"if {var}.__class__ is {self.bind(cls, 'c')}:",
                f"    {var} = {self.bind(names, 'e')}[{var}]",
                "else:",
                f"    {var} = {slow}({var})",
            ]
        return [f"if {fast}:", f"    {var} = {slow}({var})"]

    def _fast_leaf(
        self, leaf_type: GraphQLLeafType, v: str
    ) -> str | tuple[type, dict[Any, str]] | None:
        """The test that sends a value off the fast path (the value is returned as it
        is when the test is false), or an enum's table, or None (always slow)."""
        coerce: Callable[[Any], Any] | None = getattr(leaf_type, "coerce_output_value", None)
        if coerce is serialize_float:
            return f"{v}.__class__ is not float or {v} - {v} != 0.0"
        if coerce is serialize_int:
            return f"{v}.__class__ is not int or not {_INT_RANGE.format(v=v)}"
        if coerce in (serialize_string, serialize_id):
            return f"{v}.__class__ is not str"
        if coerce is serialize_boolean:
            return f"{v}.__class__ is not bool"
        # Custom scalars whose serializer is a builtin type: the identity on that type.
        for builtin in (int, float, str, bool):
            if coerce is builtin:
                return f"{v}.__class__ is not {builtin.__name__}"
        return _enum_table(leaf_type)


def _enum_table(leaf_type: GraphQLLeafType) -> tuple[type, dict[Any, str]] | None:
    """A strawberry enum's members and the names graphql-core gives them."""
    cls: Any = getattr(leaf_type, "wrapped_cls", None)
    if not isinstance(cls, type) or not issubclass(cls, Enum):
        return None
    names: dict[Any, str] = {}
    try:
        for member in cls:
            names[member] = leaf_type.coerce_output_value(member)
    except Exception:
        return None
    return cls, names


@lru_cache(maxsize=512)
def compile_source(source: str) -> Any:
    """The code object of a plan's source (shared by every plan of the same shape)."""
    return compile(source, "<tickgraph compiled plan>", "exec")
