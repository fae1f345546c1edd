"""The symbols table through server.storage.symbols, on a freshly migrated database."""

from __future__ import annotations

import asyncpg
import pytest

from server.errors import InvalidSymbol
from server.storage.database import Database
from server.storage.symbols import (
    SymbolRow,
    ensure_symbols,
    get_symbol,
    load_symbols,
    upsert_symbols,
)

AAPL = SymbolRow("AAPL", name="Apple Inc.", exchange="XNAS", source="config")
BRK_B = SymbolRow("BRK.B", name="Berkshire Hathaway B", exchange="XNYS", source="polygon")
BF_B = SymbolRow("BF-B", asset_class="stocks", active=False, source="polygon")


async def updated_at(database: Database, symbol: str) -> object:
    return await database.pool.fetchval("SELECT updated_at FROM symbols WHERE symbol = $1", symbol)


async def test_round_trip(database: Database) -> None:
    assert await upsert_symbols(database.pool, [BRK_B, AAPL, BF_B]) == 3

    assert await load_symbols(database.pool) == [AAPL, BF_B, BRK_B]  # ordered by symbol
    assert await get_symbol(database.pool, "BRK.B") == BRK_B
    assert await get_symbol(database.pool, "MSFT") is None


async def test_defaults_match_the_table(database: Database) -> None:
    await database.pool.execute("INSERT INTO symbols (symbol, source) VALUES ('SPY', 'config')")
    assert await get_symbol(database.pool, "SPY") == SymbolRow("SPY", source="config")


async def test_upsert_is_idempotent_and_updates_only_changes(database: Database) -> None:
    await upsert_symbols(database.pool, [AAPL, BRK_B])
    before = await updated_at(database, "AAPL")

    assert await upsert_symbols(database.pool, [AAPL, BRK_B]) == 0
    assert await updated_at(database, "AAPL") == before

    renamed = SymbolRow("AAPL", name="Apple", exchange="XNAS", source="polygon")
    assert await upsert_symbols(database.pool, [renamed, BRK_B]) == 1
    assert await get_symbol(database.pool, "AAPL") == renamed
    assert await updated_at(database, "AAPL") != before


async def test_last_duplicate_in_a_batch_wins(database: Database) -> None:
    first = SymbolRow("TSLA", name="old", source="config")
    last = SymbolRow("TSLA", name="new", source="simulated")
    assert await upsert_symbols(database.pool, [first, last]) == 1
    assert await load_symbols(database.pool) == [last]


async def test_ensure_inserts_missing_rows_and_keeps_stored_ones(database: Database) -> None:
    await upsert_symbols(database.pool, [AAPL])
    configured = [SymbolRow("AAPL", source="config"), SymbolRow("MSFT", source="config")]

    assert await ensure_symbols(database.pool, configured) == 1
    assert await load_symbols(database.pool) == [AAPL, SymbolRow("MSFT", source="config")]
    assert await ensure_symbols(database.pool, configured) == 0
    with pytest.raises(InvalidSymbol):
        await ensure_symbols(database.pool, [SymbolRow("bad", source="config")])


async def test_empty_batch_is_a_no_op(database: Database) -> None:
    assert await upsert_symbols(database.pool, []) == 0
    assert await load_symbols(database.pool) == []


# One database per test is the expensive part, so each test checks its whole list.
BAD_SYMBOLS = ["aapl", "", "1ABC", "TOOLONGSYMBOL", "AA PL", "AAPL\n", "A$", "BRK/B"]
GOOD_SYMBOLS = ["A", "BRK.B", "BF-B", "ABCDEFGHIJ", "X1"]


async def test_invalid_symbols_are_rejected_before_writing(database: Database) -> None:
    for bad in BAD_SYMBOLS:
        with pytest.raises(InvalidSymbol) as caught:
            await upsert_symbols(database.pool, [AAPL, SymbolRow(bad, source="config")])
        assert caught.value.code == "INVALID_SYMBOL", bad
        assert caught.value.extensions["symbol"] == bad
    assert await load_symbols(database.pool) == []  # not even the valid rows


async def test_check_constraint_rejects_what_bypasses_the_store(database: Database) -> None:
    insert = "INSERT INTO symbols (symbol, source) VALUES ($1, 'test')"
    for bad in BAD_SYMBOLS:
        with pytest.raises(asyncpg.CheckViolationError, match="symbols_symbol_format"):
            await database.pool.execute(insert, bad)
    for good in GOOD_SYMBOLS:
        await database.pool.execute(insert, good)
    assert [r.symbol for r in await load_symbols(database.pool)] == sorted(GOOD_SYMBOLS)


async def test_store_takes_part_in_a_callers_transaction(database: Database) -> None:
    async with database.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await upsert_symbols(conn, [AAPL])
        assert await get_symbol(conn, "AAPL") == AAPL
        await transaction.rollback()
    assert await load_symbols(database.pool) == []
