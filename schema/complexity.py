"""How much work validating a document can take, bounded before validation runs.

graphql-core's validation is linear in the document for every rule but one:
``OverlappingFieldsCanBeMerged`` compares every pair of fields that share a response
key in a selection set (fragments and inline fragments merged in), and recurses into
their sub-selections. A 2,000-token document of ``feedStatus { state }`` repeated 500
times costs it 250,000 comparisons: close to a second of the one event loop, for a
document that parses, passes every size limit and is then refused as invalid anyway.
The rule is not interruptible, so the only safe place to stop such a document is
before validation starts.

This module bounds that work from the document alone, in one pass with fragments
expanded by memo (never textually, so a fragment spread a million times over is
counted, not walked). A selection set is flattened the way the rule sees it: fields
from inline fragments and spreads merged in, and the sub-selections of fields that
share a response key merged together. Its overlap work is then estimated as

    work(S) = spreads(S)^2 + sum over response keys K of
              ( count(K)^2 + work(the merged sub-selections of K) )

where ``count(K)`` is how many fields share the key and ``spreads(S)`` how many
distinct fragments are spread into the set. That bounds what the rule does: every
pair of same-key fields is compared (at most ``count^2``), every pair of their
sub-fields with a common key too (all of them pairs within the merged
sub-selection), and every pair of spread fragments is compared once. A document
whose work exceeds the budget, or that expands to more fields than ``max_fields``,
is refused with ``QUERY_TOO_COMPLEX``. Real clients stay far below both: GraphiQL's
introspection query expands to about 450 fields and works out at about as many
units, since real selection sets rarely repeat a key. Measured on this machine the
rule costs well under a microsecond per unit, so the default budget bounds
validation to a few milliseconds whatever the document
(``tests/schema/test_complexity.py`` checks the worst documents within the limits).

Fragment cycles are left to validation (``NoFragmentCycles``): a fragment on its own
spread path counts as empty here.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

COMPLEXITY_CODE = "QUERY_TOO_COMPLEX"


@dataclass(frozen=True, slots=True)
class ComplexityLimits:
    #: Field selections with every fragment expanded where it is spread.
    max_fields: int = 2_000
    #: The overlap rule's estimated comparisons (see the module docstring).
    max_work: int = 10_000


@dataclass(frozen=True, slots=True)
class Complexity:
    fields: int
    work: int


class _Flat:
    """A selection set as the overlap rule sees it: per response key, how many fields
    share it and their sub-selections merged; ``size`` counts fields, recursively."""

    __slots__ = ("keys", "size", "spreads")

    def __init__(self) -> None:
        self.keys: dict[str, tuple[int, _Flat | None]] = {}
        self.size = 0
        self.spreads: set[str] = set()

    def add_field(self, key: str, sub: _Flat | None) -> None:
        count, merged = self.keys.get(key, (0, None))
        self.keys[key] = (count + 1, _merge(merged, sub))
        self.size += 1 + (sub.size if sub else 0)

    def add_flat(self, other: _Flat) -> None:
        for key, (count, sub) in other.keys.items():
            mine, merged = self.keys.get(key, (0, None))
            self.keys[key] = (mine + count, _merge(merged, sub))
        self.size += other.size


def _merge(a: _Flat | None, b: _Flat | None) -> _Flat | None:
    if a is None:
        return b
    if b is None:
        return a
    merged = _Flat()
    merged.add_flat(a)
    merged.add_flat(b)
    return merged


def _work(flat: _Flat | None, cap: int) -> int:
    """The estimate of the module docstring, stopping once it passes ``cap``."""
    if flat is None:
        return 0
    total = len(flat.spreads) ** 2
    for count, sub in flat.keys.values():
        total += count * count + _work(sub, cap)
        if total > cap:
            return cap + 1
    return total


class _Measure:
    def __init__(self, document: DocumentNode, limits: ComplexityLimits) -> None:
        self.limits = limits
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.memo: dict[str, _Flat] = {}
        self.on_path: set[str] = set()
        self.work = 0

    def over(self, flat: _Flat) -> bool:
        return flat.size > self.limits.max_fields

    def fragment(self, name: str) -> _Flat:
        cached = self.memo.get(name)
        if cached is not None:
            return cached
        definition = self.fragments.get(name)
        if definition is None or name in self.on_path:
            return _Flat()
        self.on_path.add(name)
        try:
            flat = self.selection_set(definition.selection_set)
        finally:
            self.on_path.discard(name)
        self.memo[name] = flat
        return flat

    def selection_set(self, selection_set: SelectionSetNode) -> _Flat:
        flat = _Flat()
        stack = [selection_set]
        # Stop as soon as the document is known to be too large: what a crafted
        # document asks for grows exponentially with fragment nesting, and merging
        # costs what was merged.
        while stack and not self.over(flat):
            for selection in stack.pop().selections:
                if isinstance(selection, FieldNode):
                    sub = (
                        self.selection_set(selection.selection_set)
                        if selection.selection_set is not None
                        else None
                    )
                    flat.add_field((selection.alias or selection.name).value, sub)
                elif isinstance(selection, InlineFragmentNode):
                    stack.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    flat.spreads.add(selection.name.value)
                    flat.add_flat(self.fragment(selection.name.value))
                if self.over(flat):
                    break
        return flat


def measure(document: DocumentNode, limits: ComplexityLimits | None = None) -> Complexity:
    """The document's expanded size and estimated overlap work (all operations, and
    unused fragments too, since validation visits them)."""
    limits = limits or ComplexityLimits()
    m = _Measure(document, limits)
    fields = 0
    work = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            flat = m.selection_set(definition.selection_set)
        elif isinstance(definition, FragmentDefinitionNode):
            flat = m.fragment(definition.name.value)
        else:
            continue
        fields += flat.size
        work += _work(flat, limits.max_work)
        if fields > limits.max_fields or work > limits.max_work:
            break
    return Complexity(
        fields=min(fields, limits.max_fields + 1), work=min(work, limits.max_work + 1)
    )


def too_complex(document: DocumentNode, limits: ComplexityLimits) -> GraphQLError | None:
    """The refusal for a document over the limits, or None."""
    found = measure(document, limits)
    if found.fields > limits.max_fields:
        message = (
            f"The document selects more than {limits.max_fields} fields once its "
            "fragments are expanded."
        )
    elif found.work > limits.max_work:
        message = (
            "The document repeats fields too often to be checked: fields sharing a "
            "response key (directly or through fragments) must be merged by the server, "
            "pair by pair. Select each field once per selection set."
        )
    else:
        return None
    return GraphQLError(
        message,
        extensions={
            "code": COMPLEXITY_CODE,
            "maxFields": limits.max_fields,
            "maxWork": limits.max_work,
        },
    )


__all__ = ["COMPLEXITY_CODE", "Complexity", "ComplexityLimits", "measure", "too_complex"]
