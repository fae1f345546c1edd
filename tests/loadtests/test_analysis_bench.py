"""The analysis benchmark runs end to end with tiny numbers and reports what it promises."""

from __future__ import annotations

from loadtests import analysis_bench as bench
from server.analysis.offline import OfflineAnalyst
from server.limits.tiers import ELITE
from server.storage.database import Database


async def test_first_chunk_and_snapshot_figures(database: Database) -> None:
    names = bench.symbols(bench.POSITIONS)
    history = await bench.prebuilt(names)
    first = await bench.bench_first_chunk(database, 3, history, names)
    assert first["offline"]["n"] == 3 and first["offline"]["p50"] > 0
    anthropic = first["anthropic"]
    assert anthropic["through_tickgraph"]["n"] == anthropic["bare_sdk"]["n"] == 3
    assert set(anthropic["added_ms"]) == {"p50", "p99"}
    snapshot = await bench.bench_snapshot(database, history, names, rounds=1)
    assert (snapshot["positions"], snapshot["alerts"]) == (50, 100)
    assert snapshot["portfolio_snapshot_bytes"] > 10_000


async def test_concurrent_streams(database: Database) -> None:
    names = bench.symbols(3)
    service = bench.make_service(database, OfflineAnalyst(), names, await bench.prebuilt(names))
    users = [await bench.new_user(database) for _ in range(6)]
    report = await bench.concurrent_streams(
        lambda i: service.stream(
            user_id=users[i], limits=ELITE, symbol=names[i % 3], question=f"q{i}"
        ),
        6,
    )
    assert report["streams"] == 6 and report["first_chunk_ms"]["n"] == 6
    assert report["chunks_per_s"] > 0
    await service.aclose()
