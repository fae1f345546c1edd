"""The orders benchmark runs end to end with tiny numbers and reports what it promises:
a real ``tickgraph serve`` process, real PostgreSQL, real WebSocket fills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.orders_bench import percentiles

ROOT = Path(__file__).resolve().parents[2]


def test_percentiles_of_a_known_distribution() -> None:
    summary = percentiles([float(ms) for ms in range(1, 101)])
    assert summary == {"count": 100, "p50": 50.5, "p99": 99.01, "max": 100.0}
    assert percentiles([3.0])["p99"] is None


@pytest.mark.timeout(180)
def test_orders_bench_smoke(fresh_database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKGRAPH_")}
    env |= {"DATABASE_URL": fresh_database_url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.orders_bench",
            "--clients",
            "4",
            "--users",
            "2",
            "--seconds",
            "0.5",
            "--rounds",
            "1",
            "--rate",
            "40",
            "--paced-seconds",
            "0.5",
            "--fills",
            "5",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["postgres"]["fsync"] in ("on", "off")
    throughput = report["throughput"]
    assert throughput["graphql_orders_per_s"] > 0
    assert throughput["bare_asyncpg_orders_per_s"] > 0
    assert throughput["ratio"] == pytest.approx(
        throughput["graphql_orders_per_s"] / throughput["bare_asyncpg_orders_per_s"], abs=1e-3
    )
    # Every order placed rested: none refused, none filled.
    for outcome in (throughput["rounds"][0]["graphql"]["outcomes"], report["paced"]["outcomes"]):
        assert set(outcome) <= {"NEW", "PENDING_NEW"}, outcome
    paced = report["paced"]
    assert paced["latency_ms"]["count"] == 20
    assert (
        0 < paced["latency_ms"]["p50"] <= paced["latency_ms"]["p99"] <= paced["latency_ms"]["max"]
    )
    fills = report["quote_to_fill"]["latency_ms"]
    assert fills["count"] == 5
    assert 0 < fills["p50"] <= fills["p99"] <= fills["max"]
