"""Per-event cost of one subscription group: its compiled plan against graphql-core
executing the same document, in the same run.

    python -m loadtests.plan_bench [--repeat 7]

What one event costs a group once it has the event's GraphQL object: execute the
selection and encode the payload (``server.delivery.execution.Execution.payload``,
exactly what a group calls), with the plan and with graphql-core (the path every
group took before plans). Cases, as issue 13 asks:

- ``quotes`` selections of 5, 20 and 60 leaves (scalar positions of the response: the
  quote's 15 scalar fields, then more under aliases);
- ``indicators`` with 1, 14 and 40 specs written inline in the document (the client
  of the issue did), for one MACD value (3 outputs). The API refuses more than 20
  specs per subscription; 40 is measured here, below the API, to show that a plan's
  cost does not depend on the size of the arguments at all.

Rendering the event (``Quote.of``, ``IndicatorValue.of``) is the same for both and is
reported apart. Prints one JSON object: medians in microseconds per event, and the
ratio graphql-core / plan.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graphql import parse

from schema import build_schema
from schema.bars import IndicatorValue
from schema.market import Quote
from server.analytics import IndicatorSlot, IndicatorUpdate
from server.delivery.compiled import Unsupported, compile_plan
from server.delivery.execution import Execution, ExecutionStats, plain_errors
from server.indicators import IndicatorSpec
from server.market.timeframes import Timeframe
from streams.events import Quote as QuoteEvent
from streams.events import Received
from streams.recording import load_events

RECORDING = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "polygon-replay-AMZN-2012-06-21.jsonl.gz"
)
QUOTE_SCALARS = (
    *("symbol", "bidPrice", "bidSize", "bidExchange", "askPrice", "askSize", "askExchange"),
    *("condition", "tape", "sequence", "exchangeTime", "receivedAt", "snapshot"),
    *("midPrice", "spread"),
)
#: Specs to draw from for the indicators documents (cycled, with growing periods).
_KINDS = (
    "{kind: SMA, period: %d}",
    "{kind: EMA, period: %d}",
    "{kind: WMA, period: %d}",
    "{kind: RSI, period: %d}",
    "{kind: BBANDS, period: %d, stdDev: 2}",
    "{kind: ATR, period: %d}",
    "{kind: DONCHIAN, period: %d}",
    "{kind: ADX, period: %d}",
)
TARGET_US_20_LEAVES = 5.0


def quotes_document(leaves: int) -> str:
    fields = list(QUOTE_SCALARS[:leaves])
    for n in range(leaves - len(fields)):
        fields.append(f"a{n}: {QUOTE_SCALARS[n % len(QUOTE_SCALARS)]}")
    assert len(fields) == leaves
    return f'subscription {{ quotes(symbols: ["AMZN"]) {{ {" ".join(fields)} }} }}'


def indicators_document(specs: int) -> str:
    chosen = [
        "{kind: MACD, fast: 12, slow: 26, signal: 9}",
        *(_KINDS[i % len(_KINDS)] % (5 + i) for i in range(specs - 1)),
    ]
    return (
        'subscription { indicators(symbol: "AMZN", timeframe: M1, '
        f"specs: [{', '.join(chosen)}]) "
        "{ symbol timeframe key ready final barStart coldStart outputs { name value } } }"
    )


def executions(document: str) -> tuple[Execution, Execution]:
    schema = build_schema()
    executor = schema.execution_context_class.build(schema._schema, parse(document))
    assert not isinstance(executor, list), executor
    stats = ExecutionStats()
    plan = compile_plan(executor, schema)
    compiled = Execution(executor, plan=plan, format_errors=plain_errors, stats=stats)
    reference = Execution(
        executor, plan=Unsupported("baseline"), format_errors=plain_errors, stats=stats
    )
    return compiled, reference


def per_call_us(fn: Callable[[], Any], repeat: int, seconds: float = 0.2) -> float:
    """Median over ``repeat`` runs of enough calls to take about ``seconds`` each."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    runs = timer.repeat(repeat=repeat, number=number)
    return statistics.median(runs) / number * 1e6


def measure(document: str, event: Any, repeat: int) -> dict[str, Any]:
    compiled, reference = executions(document)
    assert compiled.payload(event) == reference.payload(event)  # the same bytes
    plan_us = per_call_us(lambda: compiled.payload(event), repeat)
    graphql_us = per_call_us(lambda: reference.payload(event), repeat, seconds=0.5)
    return {
        "plan_us": round(plan_us, 2),
        "graphql_core_us": round(graphql_us, 1),
        "graphql_core_over_plan": round(graphql_us / plan_us, 1),
        "payload_bytes": len(compiled.payload(event)[0]),
    }


def first_quote() -> Received:
    for event in load_events(RECORDING):
        if type(event) is QuoteEvent and event.bp > 0 and event.ap > 0:
            return Received(event, 1_340_285_400_123_456_789)
    raise RuntimeError("no quote in the recording")


def macd_value() -> tuple[IndicatorSlot, IndicatorUpdate]:
    spec = IndicatorSpec.parse("MACD(12,26,9)")
    slot = IndicatorSlot("AMZN", Timeframe.M1, spec, spec.create())
    update = IndicatorUpdate(
        "AMZN", Timeframe.M1, spec.key, spec.outputs, (0.42, 0.37, 0.05),
        1_340_285_400_000, False, 1_340_285_412_345,
    )  # fmt: skip
    return slot, update


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    if not RECORDING.is_file():
        parser.error(f"no recording at {RECORDING}")
    received = first_quote()
    quote = Quote.of(received)
    slot, update = macd_value()
    value = IndicatorValue.of(slot, update)
    quotes = {
        str(leaves): measure(quotes_document(leaves), quote, args.repeat) for leaves in (5, 20, 60)
    }
    indicators = {
        str(specs): measure(indicators_document(specs), value, args.repeat) for specs in (1, 14, 40)
    }
    plan_costs = [case["plan_us"] for case in indicators.values()]
    # Independent by construction: the three plans are one and the same code.
    sources = {executions(indicators_document(n))[0].plan.source for n in (1, 14, 40)}  # type: ignore[union-attr]
    report = {
        "benchmark": "per-event cost of one group: execute + encode",
        "quotes_by_leaves": quotes,
        "indicators_by_specs": indicators,
        "render_us": {
            "Quote.of": round(per_call_us(lambda: Quote.of(received), args.repeat), 2),
            "IndicatorValue.of": round(
                per_call_us(lambda: IndicatorValue.of(slot, update), args.repeat), 2
            ),
        },
        "indicators_plan_max_over_min": round(max(plan_costs) / min(plan_costs), 2),
        "indicators_plans_are_one_code": len(sources) == 1,
        "target": {
            "plan_us_for_20_leaves_at_most": TARGET_US_20_LEAVES,
            "met": quotes["20"]["plan_us"] <= TARGET_US_20_LEAVES,
        },
        "repeat": args.repeat,
        "python": sys.version.split()[0],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
