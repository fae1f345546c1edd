"""Turning per-target fan-out reports into comparisons: ratios, the saturation point, the
slow-client effect, and a compact table for people. Pure functions of the report dicts.

Throughput is ``deliveries_per_s``: quotes that reached subscribers during the window,
by the subscribers' clock (a quote inside a batch counts as one). Latency is the p99 of
those deliveries: ``p99_ms`` from the replay sending the quote (``feed_latency_ms``,
when the replay stamps quotes; it includes any backlog in front of a server that reads
its feed slower than it is offered) or else from the server reading it
(``latency_ms``), which is also given as ``p99_read_ms``. ``tickgraph_vs_X`` is
tickgraph's throughput divided by X's (above 1: tickgraph delivers more);
``p99_tickgraph_vs_X`` is tickgraph's p99 over X's (below 1: tickgraph is faster). A
ratio is ``None`` when either side has no figure.

The table's columns: offered quotes/s; deliveries/s; p99 end to end ("p99 ms") and
from the server's read ("srv p99"); the server's CPU ("cpu %", of one core) and the
subscriber processes' together ("cli %": near 100 per process, the clients are the
limit, not the server); the server's RSS growth during the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loadtests.fanout_scenarios import P99_LIMIT_MS, SLOW_WITH, SLOW_WITHOUT

REFERENCE = "tickgraph"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 3)


def _p99_of(summary: Mapping[str, Any] | None) -> float | None:
    value = (summary or {}).get("p99")
    return float(value) if isinstance(value, int | float) else None


def p99(window: Mapping[str, Any]) -> float | None:
    """End to end when the feed has a clock, else from the server's read."""
    feed = _p99_of(window.get("feed_latency_ms"))
    return feed if feed is not None else _p99_of(window.get("latency_ms"))


def headline(window: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of one window worth comparing."""
    server = window.get("server") or {}
    clients = [c for c in window.get("client_procs_cpu_percent") or [] if c is not None]
    return {
        "step": window.get("step"),
        "events_offered_per_s": window.get("events_offered_per_s"),
        "deliveries_per_s": window.get("deliveries_per_s"),
        "p99_ms": p99(window),
        "p99_read_ms": _p99_of(window.get("latency_ms")),
        "delivered_fraction": window.get("delivered_fraction"),
        "server_cpu_percent": server.get("cpu_percent"),
        "clients_cpu_percent": round(sum(clients), 1) if clients else None,
        "rss_growth_in_window_mb": server.get("rss_growth_in_window_mb"),
    }


def ratios(figures: Mapping[str, Mapping[str, Any] | None]) -> dict[str, float | None]:
    """tickgraph against every other target, on throughput and on p99."""
    out: dict[str, float | None] = {}
    mine = figures.get(REFERENCE)
    if not mine:
        return out
    for other, figure in figures.items():
        if other == REFERENCE:
            continue
        theirs = figure or {}
        out[f"{REFERENCE}_vs_{other}"] = ratio(
            mine.get("deliveries_per_s"), theirs.get("deliveries_per_s")
        )
        out[f"p99_{REFERENCE}_vs_{other}"] = ratio(mine.get("p99_ms"), theirs.get("p99_ms"))
    return out


def best_under(
    windows: Sequence[Mapping[str, Any]], limit_ms: float = P99_LIMIT_MS
) -> dict[str, Any] | None:
    """The window with the most deliveries/s among those whose p99 is within ``limit_ms``."""
    fit = [w for w in windows if (p := p99(w)) is not None and p <= limit_ms]
    if not fit:
        return None
    return headline(max(fit, key=lambda w: w.get("deliveries_per_s") or 0.0))


def slow_effect(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """Fast subscribers' p99 with the slow ones and without them (by step label), and
    what the slow ones cost in server memory."""
    windows = {w.get("step"): w for w in report.get("windows") or []}
    with_slow, without = windows.get(SLOW_WITH), windows.get(SLOW_WITHOUT)
    if with_slow is None or without is None:
        return None
    server = with_slow.get("server") or {}
    slow = report.get("slow_clients") or {}
    return {
        "p99_with_ms": p99(with_slow),
        "p99_without_ms": p99(without),
        "p99_ratio_with_vs_without": ratio(p99(with_slow), p99(without)),
        "deliveries_per_s_with": with_slow.get("deliveries_per_s"),
        "deliveries_per_s_without": without.get("deliveries_per_s"),
        "slow_subscribed": slow.get("subscribed"),
        "rss_slow_connect_and_fill_mb": _diff(
            slow.get("rss_after_fill_mb"), slow.get("rss_before_mb")
        ),
        "rss_growth_in_window_with_slow_mb": server.get("rss_growth_in_window_mb"),
        "kernel_send_queue_mb": slow.get("kernel_send_queue_before_they_left_mb"),
        "rss_released_when_they_left_mb": _diff(
            server.get("rss_end_mb"), slow.get("rss_after_they_left_mb")
        ),
    }


def _diff(a: float | None, b: float | None) -> float | None:
    return round(a - b, 1) if a is not None and b is not None else None


def _windows(report: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return list((report or {}).get("windows") or [])


def scenario_summary(name: str, targets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per-target figures of one scenario and tickgraph's ratios to the others."""
    if name == "saturation":
        best = {kind: best_under(_windows(rep)) for kind, rep in targets.items()}
        steps = {kind: [headline(w) for w in _windows(rep)] for kind, rep in targets.items()}
        return {"p99_limit_ms": P99_LIMIT_MS, "best": best, "steps": steps, "ratios": ratios(best)}
    if name == "slow_clients":
        effect = {kind: slow_effect(rep) for kind, rep in targets.items()}
        with_slow = {
            kind: {"deliveries_per_s": e["deliveries_per_s_with"], "p99_ms": e["p99_with_ms"]}
            if e
            else None
            for kind, e in effect.items()
        }
        return {"effect": effect, "ratios": ratios(with_slow)}
    figures: dict[str, dict[str, Any] | None] = {}
    for kind, rep in targets.items():
        windows = _windows(rep)
        figures[kind] = headline(windows[0]) if windows else None
        if figures[kind] is not None and windows and "dropped_before" in windows[0]:
            fig = figures[kind]
            assert fig is not None
            fig["messages_per_s"] = windows[0].get("messages_per_s")
            fig["events_delivered_per_s"] = windows[0].get("events_delivered_per_s")
            fig["dropped_before"] = windows[0].get("dropped_before")
    return {"figures": figures, "ratios": ratios(figures)}


# --- the table ---------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def table(scenarios: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per scenario, target and step; the ratios under each scenario."""
    head = (
        f"{'scenario':<18} {'target':<11} {'step':<13} {'offered/s':>10} "
        f"{'deliveries/s':>13} {'p99 ms':>9} {'srv p99':>8} {'cpu %':>6} {'cli %':>6} "
        f"{'rss +MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for name, scenario in scenarios.items():
        for kind, report in (scenario.get("targets") or {}).items():
            if "error" in report:
                lines.append(f"{name:<18} {kind:<11} error: {str(report['error'])[:60]}")
                continue
            for w in _windows(report):
                h = headline(w)
                lines.append(
                    f"{name:<18} {kind:<11} {str(h['step'])[:13]:<13} "
                    f"{_fmt(h['events_offered_per_s']):>10} {_fmt(h['deliveries_per_s']):>13} "
                    f"{_fmt(h['p99_ms'], 1):>9} {_fmt(h['p99_read_ms'], 1):>8} "
                    f"{_fmt(h['server_cpu_percent']):>6} {_fmt(h['clients_cpu_percent']):>6} "
                    f"{_fmt(h['rss_growth_in_window_mb'], 1):>8}"
                )
        summary = scenario.get("summary") or {}
        if name == "saturation":
            for kind, best in (summary.get("best") or {}).items():
                shown = "none within the limit"
                if best:
                    shown = f"{_fmt(best['deliveries_per_s'])}/s at {best['step']}"
                    shown += f" (p99 {best['p99_ms']} ms)"
                lines.append(f"{'':<18} best p99<={P99_LIMIT_MS:g}ms {kind}: {shown}")
        if name == "slow_clients":
            for kind, e in (summary.get("effect") or {}).items():
                if e:
                    lines.append(
                        f"{'':<18} {kind}: fast p99 {e['p99_with_ms']} ms with slow,"
                        f" {e['p99_without_ms']} without (x{e['p99_ratio_with_vs_without']});"
                        f" rss +{e['rss_slow_connect_and_fill_mb']} MB for them,"
                        f" +{e['rss_growth_in_window_with_slow_mb']} in the window;"
                        f" kernel holds {e['kernel_send_queue_mb']} MB"
                    )
        shown_ratios = ", ".join(
            f"{k}={_fmt(v, 3)}" for k, v in (summary.get("ratios") or {}).items()
        )
        if shown_ratios:
            lines.append(f"{'':<18} {shown_ratios}")
    return "\n".join(lines)
