"""Decoding Polygon frames: the fast path, and every kind of bad input losing only itself."""

from __future__ import annotations

import gzip
import json

import orjson

from streams.events import Aggregate, MinuteAggregate, Quote, Status, Trade
from streams.polygon_protocol import (
    RejectReason,
    decode_frame,
    encode_events,
    parse_topics,
    subscribe_message,
)
from tests.support.data import AMZN_REPLAY, require

TRADE = {
    "ev": "T",
    "sym": "AAPL",
    "x": 4,
    "i": "52983525029461",
    "z": 3,
    "p": 114.125,
    "s": 100,
    "c": [14, 41],
    "t": 1536036818784,
    "q": 3681328,
}
QUOTE = {
    "ev": "Q",
    "sym": "MSFT",
    "bx": 4,
    "bp": 114.125,
    "bs": 100,
    "ax": 7,
    "ap": 114.128,
    "as": 160,
    "c": 0,
    "i": [604],
    "t": 1536036818784,
    "q": 50385480,
    "z": 3,
}
AGG = {
    "ev": "AM",
    "sym": "GTE",
    "v": 4110,
    "av": 9470157,
    "op": 0.4372,
    "vw": 0.4488,
    "o": 0.4488,
    "c": 0.4486,
    "h": 0.4489,
    "l": 0.4486,
    "a": 0.4352,
    "z": 685,
    "s": 1610144640000,
    "e": 1610144700000,
}


def frame(*events: object) -> bytes:
    return orjson.dumps(list(events))


def test_documented_examples_decode_to_typed_events() -> None:
    out = decode_frame(frame(TRADE, QUOTE, AGG, {**AGG, "ev": "A"}))
    assert out.rejects == []
    trade, quote, minute, second = out.events
    assert trade == Trade(
        sym="AAPL",
        p=114.125,
        s=100,
        t=1536036818784,
        q=3681328,
        x=4,
        i="52983525029461",
        z=3,
        c=(14, 41),
    )
    assert isinstance(quote, Quote)
    assert (quote.bp, quote.ap, quote.bs, quote.ask_size, quote.i) == (
        114.125,
        114.128,
        100,
        160,
        (604,),
    )
    assert type(minute) is MinuteAggregate and minute.v == 4110
    assert type(second) is Aggregate


def test_trade_without_conditions_and_with_unknown_fields() -> None:
    raw = {k: v for k, v in TRADE.items() if k != "c"} | {"pt": 1, "trfi": 2, "trft": 3, "ds": "1"}
    (trade,) = decode_frame(frame(raw)).events
    assert isinstance(trade, Trade) and trade.c == ()


def test_status_events_are_separated() -> None:
    out = decode_frame(b'[{"ev":"status","status":"success","message":"subscribed to: T.AAPL"}]')
    assert out.events == [] and out.statuses == [Status("success", "subscribed to: T.AAPL")]


def test_bad_events_cost_only_themselves() -> None:
    bad = [
        ({**TRADE, "p": -1.0}, RejectReason.INVALID_PRICE),
        ({**TRADE, "p": 0}, RejectReason.INVALID_PRICE),
        ({**TRADE, "s": -5}, RejectReason.INVALID_SIZE),
        ({**QUOTE, "bp": 115.0, "ap": 114.0}, RejectReason.CROSSED_QUOTE),
        ({**QUOTE, "ap": -2.0}, RejectReason.INVALID_PRICE),
        ({**AGG, "h": 0.1}, RejectReason.INVALID_BAR),
        ({"ev": "LULD", "T": "X"}, RejectReason.UNKNOWN_EVENT),
        ({"sym": "X"}, RejectReason.UNKNOWN_EVENT),
        ({k: v for k, v in TRADE.items() if k != "p"}, RejectReason.MALFORMED_EVENT),
        ({**TRADE, "t": "yesterday"}, RejectReason.MALFORMED_EVENT),
        ({**TRADE, "t": -3}, RejectReason.INVALID_TIME),
    ]
    out = decode_frame(frame(TRADE, *[b for b, _ in bad], QUOTE))
    assert [r.reason for r in out.rejects] == [reason for _, reason in bad]
    assert [type(e) for e in out.events] == [Trade, Quote]


def test_nan_and_garbage_frames_are_rejected_whole() -> None:
    nan = b'[{"ev":"T","sym":"X","p":NaN,"s":1,"t":5,"q":1}]'
    for data in (nan, b"garbage", b"", b'{"ev":"T"}', b"[1,2", "[\u00ff]".encode("latin-1")):
        out = decode_frame(data)
        assert out.events == []
        assert out.rejects, data


def test_zero_side_quote_is_kept_locked_quote_is_kept() -> None:
    out = decode_frame(frame({**QUOTE, "bp": 0, "bs": 0}, {**QUOTE, "bp": 114.128}))
    assert len(out.events) == 2 and out.rejects == []


def test_encode_round_trip() -> None:
    events = decode_frame(frame(TRADE, QUOTE, AGG)).events
    assert decode_frame(encode_events(events)).events == events


def test_real_recorded_day_decodes_without_rejects() -> None:
    lines = gzip.decompress(require(AMZN_REPLAY).read_bytes()).splitlines()
    trades = quotes = 0
    for line in lines:
        out = decode_frame(line)
        assert not out.rejects
        trades += sum(type(e) is Trade for e in out.events)
        quotes += sum(type(e) is Quote for e in out.events)
    # The counts the data README gives for this file.
    assert (len(lines), trades, quotes) == (37_080, 11_419, 55_064)


def test_topics() -> None:
    assert parse_topics("T.AAPL, Q.AAPL,,AM.*,bad") == [
        ("T", "AAPL"),
        ("Q", "AAPL"),
        ("AM", "*"),
        ("bad", ""),
    ]
    assert orjson.loads(subscribe_message({"Q.B", "T.A"})) == {
        "action": "subscribe",
        "params": "Q.B,T.A",
    }


def test_every_numeric_field_is_bounded() -> None:
    """Sizes of 10^15, 2^63-1 and 2^64, a price of 1e300, absurd times, sequence numbers
    and condition codes: each costs only its own event, with a stable reason."""
    base = {**TRADE, "sym": "AMZN"}
    cases = [
        ({**base, "s": 10**15}, RejectReason.INVALID_SIZE),
        ({**base, "s": 2**63 - 1}, RejectReason.INVALID_SIZE),
        ({**base, "s": 2**64}, RejectReason.INVALID_SIZE),
        ({**base, "s": -1}, RejectReason.INVALID_SIZE),
        ({**base, "p": 1e300}, RejectReason.INVALID_PRICE),
        ({**base, "p": 0.0}, RejectReason.INVALID_PRICE),
        ({**base, "t": 4_102_444_800_000 * 10}, RejectReason.INVALID_TIME),
        ({**base, "t": 1}, RejectReason.INVALID_TIME),
        ({**base, "q": 2**64}, RejectReason.INVALID_SEQUENCE),
        ({**base, "c": [14, 10**20]}, RejectReason.INVALID_CODE),
        ({**base, "x": -3}, RejectReason.INVALID_CODE),
        ({**QUOTE, "bs": 2**64}, RejectReason.INVALID_SIZE),
        ({**QUOTE, "ap": 1e300}, RejectReason.INVALID_PRICE),
        ({**QUOTE, "i": [-1]}, RejectReason.INVALID_CODE),
        ({**AGG, "v": 2**64}, RejectReason.INVALID_SIZE),
        ({**AGG, "h": 1e300}, RejectReason.INVALID_PRICE),
        ({**AGG, "e": 1}, RejectReason.INVALID_TIME),
    ]
    for raw, reason in cases:
        out = decode_frame(json.dumps([TRADE, raw]))  # orjson refuses ints beyond 64 bits
        assert [r.reason for r in out.rejects] == [reason], raw
        assert len(out.events) == 1  # the good event of the frame survives
    assert decode_frame(frame({**base, "s": 10**9})).events  # the documented maximum


def test_condition_rules_follow_the_consolidated_tape() -> None:
    from streams.conditions import ALL, HIGH_LOW, LAST, VOLUME, flags_for

    assert flags_for(()) == ALL
    assert flags_for((14, 41)) == ALL  # intermarket sweep, trade-through exempt
    assert flags_for((37,)) == VOLUME  # odd lot
    assert flags_for((14, 37)) == VOLUME  # every condition must allow it
    assert flags_for((2,)) == VOLUME  # average price
    assert flags_for((12,)) == VOLUME  # Form T
    assert flags_for((10,)) == HIGH_LOW | VOLUME  # derivatively priced: no last
    assert flags_for((38,)) == HIGH_LOW | LAST  # corrected close: no volume
    assert flags_for((16,)) == 0  # official open: a marker
    assert flags_for((62,)) == ALL  # a financial-status indicator restricts nothing
