"""The prose of a tool call decoded from JSON pieces split anywhere."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from server.analysis.json_stream import FieldText

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def fed(document: str, cuts: list[int]) -> str:
    reader = FieldText("rationale")
    points = sorted({c % (len(document) + 1) for c in cuts})
    pieces = [document[a:b] for a, b in zip([0, *points], [*points, len(document)], strict=True)]
    return "".join(reader.feed(p) for p in pieces)


@given(
    st.text(),
    st.dictionaries(
        st.text(max_size=10).filter(lambda k: k != "rationale"), json_values, max_size=4
    ),
    st.lists(st.integers(0, 10_000), max_size=30),
    st.booleans(),
    st.booleans(),
)
def test_any_split_gives_the_decoded_value(
    prose: str, others: dict[str, object], cuts: list[int], first: bool, ascii_only: bool
) -> None:
    doc = {"rationale": prose, **others} if first else {**others, "rationale": prose}
    text = json.dumps(doc, ensure_ascii=ascii_only)
    assert fed(text, cuts) == prose


def test_escapes_and_surrogate_pairs_split_in_the_middle() -> None:
    text = json.dumps({"rationale": 'a "quote" \\ back\nslash 😀 é'}, ensure_ascii=True)
    for cut in range(len(text) + 1):
        assert fed(text, [cut]) == 'a "quote" \\ back\nslash 😀 é'


def test_nested_fields_of_the_same_name_are_not_the_prose() -> None:
    text = json.dumps(
        {"tradeIdea": {"rationale": "no"}, "notes": ["rationale"], "rationale": "yes"}
    )
    assert fed(text, []) == "yes"


def test_a_value_that_looks_like_the_key_is_not_the_key() -> None:
    text = json.dumps({"a": "rationale", "b": "not this", "rationale": "this"})
    assert fed(text, [3, 9]) == "this"


def test_text_arrives_as_it_is_fed() -> None:
    reader = FieldText("rationale")
    assert reader.feed('{"rationale": "The la') == "The la"
    assert reader.feed("st price") == "st price"
    assert not reader.done
    assert reader.feed('", "stance": "bullish"}') == ""
    assert reader.done


def test_malformed_input_never_raises() -> None:
    reader = FieldText("rationale")
    for junk in ['{"rationale": "\\uZZZZ', "}}}]]", '"\\', "\\u12"]:
        reader.feed(junk)
