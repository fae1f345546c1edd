"""Which symbols this server knows, and the one place user input becomes a symbol.

Known = the configured universe (always streamed) plus the reference data in
PostgreSQL (streamed on demand while someone subscribes, when the feed can: Polygon
and the simulated market can, a replay of a recording cannot).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from server.errors import InvalidSymbol, LimitExceeded, SymbolNotStreamed
from server.market.symbols import SYMBOL_PATTERN


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    symbol: str
    name: str = ""
    exchange: str = ""
    in_universe: bool = False


class SymbolDirectory:
    def __init__(
        self,
        universe: Sequence[str],
        reference: Iterable[SymbolInfo] = (),
        *,
        on_demand: bool = True,
    ) -> None:
        self.universe: tuple[str, ...] = tuple(universe)
        #: Whether symbols outside the universe can be streamed while subscribed.
        self.on_demand = on_demand
        self._known: dict[str, SymbolInfo] = {}
        for info in reference:
            self._known[info.symbol] = SymbolInfo(
                info.symbol, info.name, info.exchange, info.symbol in self.universe
            )
        for sym in self.universe:
            known = self._known.get(sym)
            self._known[sym] = SymbolInfo(
                sym, known.name if known else "", known.exchange if known else "", True
            )

    def all(self) -> list[SymbolInfo]:
        return sorted(self._known.values(), key=lambda i: i.symbol)

    def get(self, symbol: str) -> SymbolInfo | None:
        return self._known.get(symbol)

    def resolve(self, raw: str, *, stream: bool = False) -> str:
        """Normalise and check one symbol; raise ``InvalidSymbol`` with a helpful message.

        ``stream``: it is for a subscription, so it must be one the feed can stream
        (``SymbolNotStreamed`` otherwise, rather than a subscription that never speaks).
        """
        symbol = raw.strip().upper()
        if not SYMBOL_PATTERN.fullmatch(symbol):
            raise InvalidSymbol(
                f"{raw!r} is not a valid symbol: expected 1-10 characters, a letter first, "
                "then letters, digits, '.' or '-'",
                symbol=raw[:32],
            )
        if symbol not in self._known:
            raise InvalidSymbol(
                f"unknown symbol {symbol}: this server knows {len(self._known)} symbols "
                "(see Query.symbols; the streamed universe is set by TICKGRAPH_SYMBOLS)",
                symbol=symbol,
            )
        if stream and not self.on_demand and symbol not in self.universe:
            raise SymbolNotStreamed(
                f"{symbol} is not streamed by this server: its feed is a replay, which has "
                f"only what it recorded, and it streams {', '.join(self.universe)} "
                "(TICKGRAPH_SYMBOLS). Queries still answer for it (snapshot shows stale).",
                symbol=symbol,
            )
        return symbol

    def resolve_many(self, raws: Sequence[str], *, limit: int, stream: bool = False) -> list[str]:
        if not raws:
            raise InvalidSymbol("at least one symbol is required")
        if len(raws) > limit:
            raise LimitExceeded(f"at most {limit} symbols per request", limit=limit)
        return list(dict.fromkeys(self.resolve(r, stream=stream) for r in raws))
