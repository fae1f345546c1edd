"""The ``symbols`` reference table: which symbols exist and where each row came from.

Writers (configuration at start-up, the simulated market, a Polygon reference-data load)
call ``upsert_symbols``; readers call ``load_symbols`` / ``get_symbol``. Every function
takes a pool or a connection, so a caller can make them part of its own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from server.errors import InvalidSymbol
from server.market.symbols import SYMBOL_PATTERN

#: An asyncpg pool or connection; asyncpg ships no type information.
Executor: TypeAlias = Any


@dataclass(frozen=True, slots=True)
class SymbolRow:
    symbol: str
    name: str = ""
    exchange: str = ""
    asset_class: str = "stocks"
    active: bool = True
    #: Who wrote the row ("config", "simulated", "polygon", ...). Required: the column has
    #: no default, so that every row says where it came from.
    source: str = field(kw_only=True)


_COLUMNS = "symbol, name, exchange, asset_class, active, source"

# One statement for the whole batch: the rows travel as six arrays and unnest() turns
# them back into rows.
_INSERT_ROWS = f"""
INSERT INTO symbols AS s ({_COLUMNS})
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[])
"""

_INSERT_MISSING = _INSERT_ROWS + "ON CONFLICT (symbol) DO NOTHING"

# The WHERE clause skips rows that would not change, so a repeated upsert writes nothing
# and leaves updated_at alone.
_UPSERT = (
    _INSERT_ROWS
    + """ON CONFLICT (symbol) DO UPDATE SET
    name = EXCLUDED.name,
    exchange = EXCLUDED.exchange,
    asset_class = EXCLUDED.asset_class,
    active = EXCLUDED.active,
    source = EXCLUDED.source,
    updated_at = now()
WHERE (s.name, s.exchange, s.asset_class, s.active, s.source)
    IS DISTINCT FROM
    (EXCLUDED.name, EXCLUDED.exchange, EXCLUDED.asset_class, EXCLUDED.active, EXCLUDED.source)
"""
)


async def upsert_symbols(db: Executor, rows: Iterable[SymbolRow]) -> int:
    """Insert or update ``rows``; return how many rows were inserted or changed.

    Idempotent. When a symbol appears more than once, the last row wins. Raises
    ``InvalidSymbol`` (writing nothing) if any symbol does not match ``SYMBOL_PATTERN``.
    """
    return await _write(db, rows, _UPSERT)


async def _write(db: Executor, rows: Iterable[SymbolRow], statement: str) -> int:
    # A dict both de-duplicates (PostgreSQL refuses to update one row twice in a statement)
    # and keeps the last occurrence.
    batch = {row.symbol: row for row in rows}
    for symbol in batch:
        # fullmatch, not the pattern's own match(): "$" would also accept a trailing "\n",
        # which the database CHECK then rejects with a less helpful error.
        if not SYMBOL_PATTERN.fullmatch(symbol):
            raise InvalidSymbol(
                f"{symbol!r} is not a valid symbol (expected {SYMBOL_PATTERN.pattern})",
                symbol=symbol,
            )
    if not batch:
        return 0
    values = list(batch.values())
    status: str = await db.execute(
        statement,
        [r.symbol for r in values],
        [r.name for r in values],
        [r.exchange for r in values],
        [r.asset_class for r in values],
        [r.active for r in values],
        [r.source for r in values],
    )
    # The command tag is "INSERT 0 <rows>"; rows skipped by ON CONFLICT do not count.
    return int(status.rsplit(" ", 1)[1])


async def ensure_symbols(db: Executor, rows: Iterable[SymbolRow]) -> int:
    """Insert the rows whose symbol is not stored yet; return how many were inserted.

    Stored rows are left alone, so start-up can make sure its configured symbols exist
    without overwriting the names and exchanges a reference-data load wrote. Raises
    ``InvalidSymbol`` like ``upsert_symbols``.
    """
    return await _write(db, rows, _INSERT_MISSING)


async def load_symbols(db: Executor) -> list[SymbolRow]:
    """Every stored symbol, ordered by symbol."""
    records = await db.fetch(f"SELECT {_COLUMNS} FROM symbols ORDER BY symbol")
    return [_row(r) for r in records]


async def get_symbol(db: Executor, symbol: str) -> SymbolRow | None:
    record = await db.fetchrow(f"SELECT {_COLUMNS} FROM symbols WHERE symbol = $1", symbol)
    return None if record is None else _row(record)


def _row(record: Any) -> SymbolRow:
    return SymbolRow(
        symbol=record["symbol"],
        name=record["name"],
        exchange=record["exchange"],
        asset_class=record["asset_class"],
        active=record["active"],
        source=record["source"],
    )
