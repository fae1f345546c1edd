-- Closed bars built from trades (server.bars), written by server.bar_store.BarWriter and
-- read back for Query.bars and indicator warm-up. Only 1-minute and daily bars are kept:
-- coarser intraday bars are merges of 1-minute bars, and 1-second bars are too many to be
-- worth storing. A late trade re-writes its bar with a higher revision (an upsert).
--
-- Types:
-- - Prices and VWAP are double precision: this is market data to display and to feed to
--   indicators, never money we account for (orders and cash use numeric). It is what the
--   feed sends (JSON numbers, decoded as float64), 15 significant digits represent every
--   quoted price exactly enough, and a VWAP is a ratio with no exact decimal form anyway.
--   Floats also keep the rows narrow and the arithmetic in indicator queries fast.
-- - Volume is bigint: one day of a heavily traded low-priced stock can pass 2^31 shares.
-- - Trades (a count of prints) and revision fit in integer.
-- - Times are epoch milliseconds (bigint), as the feed sends them and the API serves them:
--   no time zone conversion on the way in or out. end_ms is exclusive; daily bars span a
--   New York calendar day (23, 24 or 25 hours).
CREATE TABLE bars (
    symbol    text             NOT NULL
              -- The same rule as symbols.symbol (server.symbols.SYMBOL_PATTERN).
              CONSTRAINT bars_symbol_format CHECK (symbol ~ '^[A-Z][A-Z0-9.\-]{0,9}$'),
    timeframe text             NOT NULL CONSTRAINT bars_timeframe CHECK (timeframe IN ('1m', '1d')),
    start_ms  bigint           NOT NULL,
    end_ms    bigint           NOT NULL,
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    volume    bigint           NOT NULL,
    vwap      double precision NOT NULL,
    trades    integer          NOT NULL,
    revision  integer          NOT NULL DEFAULT 0,
    -- Also the index of every read: one symbol and timeframe, a range of start times.
    PRIMARY KEY (symbol, timeframe, start_ms),
    CONSTRAINT bars_interval CHECK (end_ms > start_ms),
    CONSTRAINT bars_prices CHECK (low <= open AND open <= high AND low <= close AND close <= high),
    CONSTRAINT bars_counts CHECK (volume > 0 AND trades > 0 AND revision >= 0)
);
