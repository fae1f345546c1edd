"""The market as numbers: per-symbol state, bars, timeframes, trading days, symbols.

Pure and synchronous (no I/O, no asyncio): the ingest applies decoded events here, and
everything else reads from here.

- ``state``: ``MarketState``, per symbol: last trade and quote, the day's statistics,
  the recent-trades ring, sequencing.
- ``bars``: ``BarBook``/``BarBuilder``, incremental OHLCV bars for every timeframe.
- ``timeframes``: ``Timeframe`` and the ``Bar`` record shared with indicators and alerts.
- ``trading_day``: which New York trading day a timestamp belongs to.
- ``symbols``: what a ticker symbol looks like; ``directory``: which symbols are known,
  and the one place user input becomes a symbol.
"""
