"""The fan-out load test runs end to end with tiny numbers and reports what it promises.

A real process, as a user runs it: replay + ``tickgraph serve`` + a client process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.fanout import DEFAULT_RECORDING, source_ip
from loadtests.fanout_clients import LatencyHistogram
from tests.support.data import require

ROOT = Path(__file__).resolve().parents[2]


def test_histogram_percentiles_are_within_one_percent() -> None:
    hist = LatencyHistogram()
    for us in range(1, 10_001):  # 1 µs .. 10 ms, uniformly
        hist.record(float(us))
    summary = hist.summary()
    assert summary["count"] == 10_000
    for p, exact_ms in (("p50", 5.0), ("p90", 9.0), ("p99", 9.9)):
        value = summary[p]
        assert isinstance(value, float)
        assert exact_ms <= value <= exact_ms * 1.011, (p, value)
    assert summary["max"] == 10.0


def test_source_addresses_spread_over_loopback() -> None:
    addresses = [source_ip(i, 5) for i in range(2_000)]
    assert addresses[0] == addresses[4] == "127.10.0.1"
    assert addresses[5] == "127.10.0.2"
    assert len(set(addresses)) == 400
    assert all(a.startswith("127.") for a in addresses)


@pytest.mark.timeout(60)
def test_fanout_smoke(tmp_path: Path) -> None:
    # The shared recording is part of the test environment: missing, it fails.
    require(DEFAULT_RECORDING)
    out = tmp_path / "fanout.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.fanout",
            "--targets",
            "tickgraph",
            "--clients",
            "10",
            "--procs",
            "1",
            "--duration",
            "3",
            "--warmup",
            "0.5",
            "--progress",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deliveries/s=" in proc.stderr  # the progress line
    whole = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == whole
    report = whole["targets"]["tickgraph"]
    assert report["connections"]["subscribed"] == 10
    assert report["connections"]["connect_failures"] == 0
    assert report["deliveries"] > 0 and report["deliveries_per_s"] > 0
    assert report["events_offered_per_s"] > 0
    assert 0 < report["events_delivered_per_s"] <= report["events_offered_per_s"]
    assert report["expected_deliveries"] >= report["delivered_in_window"] > 0
    assert (
        report["conflated_or_dropped"]
        == report["expected_deliveries"] - report["delivered_in_window"]
    )
    latency = report["latency_ms"]
    assert latency["count"] == report["deliveries"]
    assert 0 <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99_9"]
    assert latency["p99_9"] <= latency["max"]
    server = report["server"]
    assert server["cpu_percent"] > 0 and server["rss_end_mb"] > 0
    assert report["memory_per_connection_kb"] is not None
    assert report["connections"]["errors"] == []
