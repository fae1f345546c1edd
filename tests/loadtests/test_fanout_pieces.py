"""The fan-out harness's pure pieces: pacing, looping, client plans, the minimal
WebSocket framing, the kernel backlog reading, and the comparisons it reports."""

from __future__ import annotations

import itertools
import math
import struct
from collections import Counter
from pathlib import Path

import pytest

from loadtests.fanout import sessions
from loadtests.fanout_clients import quotes_query
from loadtests.fanout_pacing import MAX_FRAME_EVENTS, TICK_S, LoopedQuotes, Pacer, loop_shift
from loadtests.fanout_scenarios import (
    ANONYMOUS_SYMBOLS_PER_IP,
    SLOW_WITH,
    SLOW_WITHOUT,
    ClientLayout,
    Phase,
    Step,
    assign_symbols,
    clients_per_ip,
    distinct_lists,
    plan_connections,
    suite,
)
from loadtests.fanout_server import clone_symbols, kernel_backlog, send_queue
from loadtests.fanout_summary import best_under, ratio, ratios, scenario_summary, slow_effect
from loadtests.fanout_wire import FrameReader, accept_key, encode_frame, mask_payload
from streams.events import Quote

# --- pacing ------------------------------------------------------------------------------


def _drive(pacer: Pacer, seconds: float, start: float = 100.0) -> list[tuple[float, int]]:
    """Poll the pacer as the source does, on a simulated clock: (time, events) per frame."""
    now, frames = start, []
    while now < start + seconds:
        n = pacer.take(now)
        if n:
            frames.append((now, n))
        now += max(pacer.wait_s(now), 1e-4)
    return frames


def test_a_low_rate_goes_out_one_quote_per_frame_evenly() -> None:
    frames = _drive(Pacer(100.0), 2.0)
    assert sum(n for _, n in frames) in (200, 201)
    assert all(n == 1 for _, n in frames)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(frames)]
    assert all(math.isclose(g, 0.01, abs_tol=2e-4) for g in gaps)


def test_a_high_rate_is_grouped_into_frames_a_tick_apart() -> None:
    frames = _drive(Pacer(10_000.0), 1.0)
    assert abs(sum(n for _, n in frames) - 10_000) <= 60
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(frames)]
    assert min(gaps) >= TICK_S - 1e-9
    assert max(n for _, n in frames) <= 60


def test_a_stalled_source_drops_its_backlog_instead_of_bursting() -> None:
    pacer = Pacer(1000.0)
    assert pacer.take(0.0) == 1
    burst = pacer.take(3.0)  # three seconds late: 3,000 due
    assert pacer.lag_resets == 1
    assert burst == 1  # re-anchored: starts afresh
    assert sum(n for _, n in _drive(pacer, 1.0, start=3.0 + TICK_S)) <= 1000 + 10


def test_a_short_delay_is_caught_up_in_bounded_frames() -> None:
    pacer = Pacer(1000.0)
    pacer.take(0.0)
    assert pacer.take(0.2) == 200  # within MAX_LAG_S: caught up, no reset
    assert pacer.lag_resets == 0
    pacer = Pacer(5000.0)
    pacer.take(0.0)
    assert pacer.take(0.3) == MAX_FRAME_EVENTS  # the rest follows in the next frames


def test_changing_the_rate_restarts_the_pacing() -> None:
    pacer = Pacer(10.0)
    pacer.take(0.0)
    pacer.set_rate(1000.0)
    assert pacer.take(0.001) == 1
    assert sum(n for _, n in _drive(pacer, 1.0, start=0.001 + TICK_S)) == pytest.approx(
        1000, abs=10
    )
    with pytest.raises(ValueError):
        pacer.set_rate(0.0)


# --- looping -----------------------------------------------------------------------------


def _quote(q: int, t: int, sym: str = "AMZN") -> Quote:
    return Quote(sym=sym, bp=10.0, ap=10.01, t=t, bs=100, ask_size=100, q=q)


def test_loop_shift_is_one_past_the_span_and_the_largest_sequence() -> None:
    shift = loop_shift([_quote(5, 1000), _quote(9, 1500), _quote(7, 1200)])
    assert (shift.time_ms, shift.seq) == (501, 10)


def test_looped_quotes_keep_sequence_numbers_increasing_per_symbol() -> None:
    looped = LoopedQuotes([_quote(3, 1000), _quote(8, 1100)], ["A", "B"])
    out = [looped.next() for _ in range(12)]  # three rounds of two quotes, two symbols
    assert [q.sym for q in out[:4]] == ["A", "B", "A", "B"]
    for sym in ("A", "B"):
        qs = [q.q for q in out if q.sym == sym]
        ts = [q.t for q in out if q.sym == sym]
        assert qs == [3, 8, 12, 17, 21, 26]
        assert all(b > a for a, b in itertools.pairwise(ts))
    assert looped.round == 3


def test_looped_quotes_are_stamped_with_the_send_time_when_asked() -> None:
    looped = LoopedQuotes([_quote(3, 1000)], ["A"])
    assert looped.next(1_700_000_000_123).t == 1_700_000_000_123
    assert looped.next().t == 1001  # round 1, recorded time shifted


def test_switching_symbols_keeps_every_symbols_sequence_increasing() -> None:
    looped = LoopedQuotes([_quote(1, 1000), _quote(2, 1001), _quote(3, 1002)], ["A"])
    first = [looped.next() for _ in range(2)]
    looped.set_symbols(["A", "B"])
    later = [looped.next() for _ in range(4)]
    a = [q.q for q in [*first, *later] if q.sym == "A"]
    assert a == sorted(set(a))
    assert {q.sym for q in later} == {"A", "B"}


# --- plans -------------------------------------------------------------------------------


def test_clients_of_one_address_stay_within_the_anonymous_symbol_quota() -> None:
    symbols = clone_symbols("AMZN", 20)
    phase = Phase("sparse", symbols, 1000, 5, (Step("s", 1.0, rate=400.0),))
    per_ip = clients_per_ip(5, 5, len(symbols))
    assert per_ip == 5
    by_ip: dict[str | None, set[str]] = {}
    for conn in plan_connections(phase, ClientLayout(per_ip)):
        by_ip.setdefault(conn.local_ip, set()).update(conn.symbols)
    assert max(len(s) for s in by_ip.values()) <= ANONYMOUS_SYMBOLS_PER_IP
    assert clients_per_ip(5, 8, 20) == 3
    assert clients_per_ip(50, 1, 2) == 50  # few symbols: the request stands


def test_every_symbol_of_the_sparse_scenario_gets_the_same_number_of_subscribers() -> None:
    symbols = clone_symbols("AMZN", 20)
    counts: dict[str, int] = {}
    for i in range(1000):
        for sym in assign_symbols(i, symbols, 5):
            counts[sym] = counts.get(sym, 0) + 1
    assert set(counts.values()) == {250}


def test_slow_clients_come_after_the_fast_ones_and_from_other_addresses() -> None:
    phase = Phase(
        "slow",
        ("A", "B"),
        9,
        1,
        (Step("without", 1.0), Step("with", 1.0)),
        slow_clients=1,
    )
    layout = ClientLayout(per_ip=3, ip_base=7)
    fast = plan_connections(phase, layout)
    slow = plan_connections(phase, layout, slow=True, feed_clock=True)
    assert len(fast) == 9 and not any(c.slow for c in fast)
    assert all(len(c.symbols) == 1 for c in fast)
    assert len(slow) == 1 and slow[0].slow and slow[0].feed_clock
    assert set(slow[0].symbols) == {"A", "B"}  # every symbol: the most not to read
    assert slow[0].local_ip not in {c.local_ip for c in fast}
    assert layout.addresses(10) == 4


def test_a_phase_that_wants_a_fresh_server_starts_a_new_session() -> None:
    names = [[p.name for p in group] for group in sessions(suite())]
    assert names == [
        ["broadcast", "sparse", "saturation", "coalescing", "distinct_lists", "distinct_documents"],
        ["slow_clients"],
    ]


def test_the_suite_scales_subscribers_not_rates() -> None:
    full, small = suite(1.0), suite(0.1)
    assert [p.name for p in full] == [
        "broadcast",
        "sparse",
        "saturation",
        "coalescing",
        "distinct_lists",
        "distinct_documents",
        "slow_clients",
    ]
    for big, little in zip(full, small, strict=True):
        assert little.clients == round(big.clients / 10)
        assert [s.rate for s in little.steps] == [s.rate for s in big.steps]
    broadcast, sparse, saturation, coalescing, lists, documents, slow = full
    assert broadcast.clients == 1000 and len(broadcast.symbols) == 1
    assert sparse.clients == 1000 and len(sparse.symbols) == 20
    assert sparse.symbols_per_client == 5 and sparse.steps[0].rate == 400.0
    rates = [s.rate or 0.0 for s in saturation.steps]
    assert len(rates) >= 3 and rates == sorted(rates)
    assert coalescing.targets == ("tickgraph",) and coalescing.batch_window_ms
    assert slow.slow_clients == 100 and slow.clients == 900
    assert [s.label for s in slow.steps] == [SLOW_WITH, SLOW_WITHOUT]
    for distinct in (lists, documents):
        # The sparse load, in groups of one.
        assert (distinct.clients, distinct.symbols, distinct.symbols_per_client) == (
            sparse.clients, sparse.symbols, sparse.symbols_per_client,
        )  # fmt: skip
        assert distinct.steps == sparse.steps and distinct.targets == ("tickgraph", "raw")


def test_distinct_phases_give_every_subscriber_its_own_list_and_maybe_document() -> None:
    full = {p.name: p for p in suite()}
    for name, variants in (("distinct_lists", False), ("distinct_documents", True)):
        plans = plan_connections(full[name], ClientLayout(per_ip=1))
        assert len({frozenset(c.symbols) for c in plans}) == len(plans) == 1000
        assert all(len(c.symbols) == 5 for c in plans)
        per_symbol = Counter(s for c in plans for s in c.symbols)
        assert min(per_symbol.values()) > 200 and max(per_symbol.values()) < 300
        assert len({c.local_ip for c in plans}) == 1000  # the anonymous quota is per address
        documents = {quotes_query(False, c.variant) for c in plans}
        assert len(documents) == (1000 if variants else 1)
    assert distinct_lists(3, ("A", "B", "C", "D"), 2) == distinct_lists(3, ("A", "B", "C", "D"), 2)
    with pytest.raises(ValueError, match="distinct"):
        distinct_lists(5, ("A", "B", "C"), 3)


# --- the wire ----------------------------------------------------------------------------


def test_accept_key_is_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_masking_twice_gives_the_payload_back() -> None:
    key = b"\x01\x02\x03\x04"
    payload = b'{"type":"connection_init"}'
    assert mask_payload(mask_payload(payload, key), key) == payload
    frame = encode_frame(0x1, payload, key)
    assert frame[:2] == bytes((0x81, 0x80 | len(payload))) and frame[2:6] == key


def _server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


def test_frame_reader_reassembles_messages_split_anywhere() -> None:
    messages: list[bytes] = []
    controls: list[tuple[int, bytes]] = []
    reader = FrameReader(messages.append, lambda op, p: controls.append((op, p)))
    big = b"x" * 70_000
    stream = (
        _server_frame(0x1, b"hello")
        + _server_frame(0x9, b"ping!")
        + _server_frame(0x1, b"a" * 300)
        + _server_frame(0x1, b"frag-", fin=False)
        + _server_frame(0x0, b"ment")
        + _server_frame(0x2, big)
    )
    for i in range(0, len(stream), 7):
        reader.feed(stream[i : i + 7])
    assert messages == [b"hello", b"a" * 300, b"frag-ment", big]
    assert controls == [(0x9, b"ping!")]


def test_frame_reader_refuses_masked_server_frames() -> None:
    reader = FrameReader(lambda m: None, lambda op, p: None)
    with pytest.raises(ValueError):
        reader.feed(bytes((0x81, 0x85)) + b"\0\0\0\0hello")


# --- the kernel's backlog ----------------------------------------------------------------


def test_kernel_queues_are_read_from_the_tcp_table(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    port = 0x9F3A
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr ...\n"
    rows = [
        f"0: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:0 0",  # listening
        f"1: 0100007F:{port:04X} 0100007F:C1A4 01 00000100:00000000 00:0 0",  # replay end
        f"2: 0100007F:C1A4 0100007F:{port:04X} 01 00000000:00000020 00:0 0",  # reader end
        "3: 0100007F:1234 0100007F:5678 01 00009999:00009999 00:0 0",  # unrelated
    ]
    table.write_text(header + "\n".join(rows) + "\n")
    assert kernel_backlog(port, table) == 0x100 + 0x20
    assert kernel_backlog(port, tmp_path / "missing") is None
    assert send_queue(port, table) == 0x100  # the server's end only
    assert send_queue(0x1234, table) == 0x9999


# --- comparisons -------------------------------------------------------------------------


def _window(deliveries: float, p99_read: float, p99_feed: float | None = None) -> dict[str, object]:
    feed = {"p99": p99_feed} if p99_feed is not None else None
    return {
        "step": "s",
        "deliveries_per_s": deliveries,
        "latency_ms": {"p99": p99_read},
        "feed_latency_ms": feed,
        "server": {"cpu_percent": 50.0, "rss_growth_in_window_mb": 0.5},
    }


def test_ratios_compare_tickgraph_with_every_other_target() -> None:
    figures = {
        "tickgraph": {"deliveries_per_s": 30_000.0, "p99_ms": 20.0},
        "raw": {"deliveries_per_s": 60_000.0, "p99_ms": 10.0},
        "strawberry": {"deliveries_per_s": 3_000.0, "p99_ms": 400.0},
    }
    assert ratios(figures) == {
        "tickgraph_vs_raw": 0.5,
        "p99_tickgraph_vs_raw": 2.0,
        "tickgraph_vs_strawberry": 10.0,
        "p99_tickgraph_vs_strawberry": 0.05,
    }
    assert ratio(1.0, 0.0) is None and ratio(None, 2.0) is None
    assert ratios({"raw": figures["raw"]}) == {}
    assert ratios({"tickgraph": figures["tickgraph"], "raw": None})["tickgraph_vs_raw"] is None


def test_latency_is_end_to_end_when_the_feed_has_a_clock() -> None:
    summary = scenario_summary(
        "broadcast",
        {"tickgraph": {"windows": [_window(100.0, 5.0, 900.0)]}, "raw": {"windows": []}},
    )
    tickgraph = summary["figures"]["tickgraph"]
    assert tickgraph["p99_ms"] == 900.0 and tickgraph["p99_read_ms"] == 5.0
    assert summary["figures"]["raw"] is None


def test_the_saturation_point_is_the_most_deliveries_within_the_latency_bound() -> None:
    windows = [_window(10_000, 3, 4), _window(30_000, 8, 40), _window(90_000, 9, 3_000)]
    best = best_under(windows)
    assert best is not None and best["deliveries_per_s"] == 30_000
    assert best_under([_window(5_000, 1, 80)]) is None
    summary = scenario_summary("saturation", {"tickgraph": {"windows": windows}})
    assert summary["best"]["tickgraph"]["deliveries_per_s"] == 30_000
    assert len(summary["steps"]["tickgraph"]) == 3


def test_the_slow_client_effect_compares_the_windows_with_and_without_them() -> None:
    with_slow = {**_window(8_000, 3, 12), "step": SLOW_WITH}
    with_slow["server"] = {"rss_growth_in_window_mb": 0.5, "rss_end_mb": 70.0}
    without = {**_window(9_000, 2, 4), "step": SLOW_WITHOUT}
    report = {
        "windows": [with_slow, without],
        "slow_clients": {
            "subscribed": 100,
            "rss_before_mb": 60.0,
            "rss_after_fill_mb": 66.5,
            "rss_after_they_left_mb": 64.0,
        },
    }
    effect = slow_effect(report)
    assert effect is not None
    assert effect["p99_with_ms"] == 12 and effect["p99_without_ms"] == 4
    assert effect["p99_ratio_with_vs_without"] == 3.0
    assert effect["rss_slow_connect_and_fill_mb"] == 6.5
    assert effect["rss_growth_in_window_with_slow_mb"] == 0.5
    assert effect["rss_released_when_they_left_mb"] == 6.0
    assert slow_effect({"windows": [_window(1, 1)]}) is None
