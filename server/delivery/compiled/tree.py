"""The selection of one operation, resolved once: what every event will execute.

Fields are collected by graphql-core's own ``collect_fields``/``collect_subfields``
with the group's variables, so fragments, inline fragments, ``@skip``/``@include``,
aliases and the merging of repeated fields come out exactly as graphql-core's
executor would see them on every event; the result is a tree of response keys, how
each value is resolved, and how it is completed (non-null, list, leaf, object,
abstract), with the AST nodes and path of every position for its errors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLAbstractType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import FieldDetails, collect_fields, collect_subfields
from graphql.execution.executor import Executor

from server.delivery.compiled.resolution import (
    Resolution,
    Unsupported,
    resolution_of,
    signature_of,
)
from server.delivery.compiled.runtime import INDEX, Template

#: Above this many positions an operation is executed by graphql-core: compiling it
#: would cost more than it saves (the hardening limits keep real documents far below).
MAX_POSITIONS = 5_000
_INCREMENTAL = frozenset({"defer", "stream"})


@dataclass(slots=True)
class NonNull:
    inner: Completion


@dataclass(slots=True)
class ListOf:
    item: Completion
    #: Path template of an item (the list's, plus an index).
    template: Template


@dataclass(slots=True)
class Leaf:
    type: GraphQLLeafType


@dataclass(slots=True)
class Obj:
    type: GraphQLObjectType
    fields: list[Field]
    #: Set when the type checks its values (``is_type_of``): the field it completes.
    checked_by: Field | None = None


@dataclass(slots=True)
class Abstract:
    type: GraphQLAbstractType
    #: The completion for each possible object type, by name.
    by_name: dict[str, Obj]


Completion = NonNull | ListOf | Leaf | Obj | Abstract


@dataclass(slots=True)
class Field:
    key: str
    name: str
    parent_type: GraphQLObjectType
    definition: GraphQLField
    details: list[FieldDetails]
    resolution: Resolution
    template: Template
    completion: Completion = field(init=False)

    @property
    def nodes(self) -> list[Any]:
        return [d.node for d in self.details]


@dataclass(slots=True)
class Tree:
    root: Obj
    positions: int
    #: True when some position needs the info object or the context: the results are
    #: then the group's own and cannot be shared with another group.
    impure: bool


class _Builder:
    def __init__(self, executor: Executor[Any], strawberry_schema: Any) -> None:
        self.executor = executor
        self.schema = executor.schema
        self.strawberry_schema = strawberry_schema
        self.positions = 0
        self.impure = False

    def root(self) -> Obj:
        ex = self.executor
        if not ex.error_propagation:
            raise Unsupported("error propagation is disabled for this operation")
        root_type = self.schema.get_root_type(ex.operation.operation)
        if root_type is None:
            raise Unsupported("the schema has no root type for this operation")
        grouped, defers, _forbidden = collect_fields(
            self.schema, ex.fragments, ex.variable_values, root_type, ex.operation,
            ex.hide_suggestions,
        )  # fmt: skip
        if defers:
            raise Unsupported("@defer")
        return self.object(root_type, grouped, (), root=True)

    def object(
        self,
        object_type: GraphQLObjectType,
        grouped: dict[str, list[FieldDetails]],
        template: Template,
        *,
        root: bool = False,
    ) -> Obj:
        fields: list[Field] = []
        for key, details in grouped.items():
            name = details[0].node.name.value
            definition = self.schema.get_field(object_type, name)
            if definition is None:
                continue  # graphql-core leaves such a key out of the result
            for detail in details:
                if any(d.name.value in _INCREMENTAL for d in detail.node.directives or ()):
                    raise Unsupported("@defer/@stream")
            self.positions += 1
            if self.positions > MAX_POSITIONS:
                raise Unsupported(f"more than {MAX_POSITIONS} positions")
            resolution = resolution_of(
                self.schema,
                object_type,
                definition,
                details,
                root=root,
                strawberry_schema=self.strawberry_schema,
                variable_values=self.executor.variable_values,
                hide_suggestions=self.executor.hide_suggestions,
            )
            if signature_of(resolution) is None:
                self.impure = True
            f = Field(
                key,
                name,
                object_type,
                definition,
                details,
                resolution,
                (*template, (key, object_type.name)),
            )
            f.completion = self.completion(definition.type, f, f.template)
            fields.append(f)
        return Obj(object_type, fields)

    def completion(self, type_: GraphQLOutputType, f: Field, template: Template) -> Completion:
        if is_non_null_type(type_):
            assert isinstance(type_, GraphQLNonNull)
            return NonNull(self.completion(type_.of_type, f, template))
        if is_list_type(type_):
            assert isinstance(type_, GraphQLList)
            item_template = (*template, (INDEX, None))
            return ListOf(self.completion(type_.of_type, f, item_template), item_template)
        if is_leaf_type(type_):
            return Leaf(type_)
        if is_object_type(type_):
            assert isinstance(type_, GraphQLObjectType)
            return self.sub_object(type_, f, template)
        if is_abstract_type(type_):
            self.impure = True  # resolve_type gets the info object
            abstract: GraphQLAbstractType = type_
            possible = self.schema.get_possible_types(abstract)
            return Abstract(abstract, {t.name: self.sub_object(t, f, template) for t in possible})
        raise Unsupported(f"cannot complete {type_}")

    def sub_object(self, object_type: GraphQLObjectType, f: Field, template: Template) -> Obj:
        ex = self.executor
        grouped, defers, _forbidden = collect_subfields(
            self.schema, ex.fragments, ex.variable_values, ex.operation, object_type,
            f.details, ex.hide_suggestions,
        )  # fmt: skip
        if defers:
            raise Unsupported("@defer")
        # The object's own fields hang below the field's position (list indices included).
        obj = self.object(object_type, grouped, template)
        if object_type.is_type_of is not None:
            self.impure = True
            obj.checked_by = f
        return obj


def build_tree(executor: Executor[Any], strawberry_schema: Any = None) -> Tree:
    """The operation of ``executor`` (built for the group: document, variables)."""
    builder = _Builder(executor, strawberry_schema)
    root = builder.root()
    return Tree(root, builder.positions, builder.impure)


def resolutions(tree: Tree) -> Counter[str]:
    """How many positions resolve which way (``Attribute``, ``Method``, ``Generic``...)."""
    counts: Counter[str] = Counter()

    def walk(c: Completion) -> None:
        if isinstance(c, NonNull):
            walk(c.inner)
        elif isinstance(c, ListOf):
            walk(c.item)
        elif isinstance(c, Obj):
            for f in c.fields:
                counts[type(f.resolution).__name__] += 1
                walk(f.completion)
        elif isinstance(c, Abstract):
            for obj in c.by_name.values():
                walk(obj)

    walk(tree.root)
    return counts


def signature(tree: Tree) -> Hashable | None:
    """Equal for two trees that give the same result for every root value when
    nothing fails (error locations differ between documents); ``None`` when results
    depend on more than the root value."""
    if tree.impure:
        return None

    def of_completion(c: Completion) -> Hashable:
        if isinstance(c, NonNull):
            return ("!", of_completion(c.inner))
        if isinstance(c, ListOf):
            return ("[]", of_completion(c.item))
        if isinstance(c, Leaf):
            return ("leaf", c.type.name, id(c.type))
        if isinstance(c, Obj):
            return ("obj", c.type.name, id(c.type), tuple(of_field(f) for f in c.fields))
        raise AssertionError("impure trees have no signature")

    def of_field(f: Field) -> Hashable:
        return (f.key, f.name, signature_of(f.resolution), of_completion(f.completion))

    return of_completion(tree.root)
