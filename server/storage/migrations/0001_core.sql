-- Reference data: every symbol the server knows, and where the row came from
-- ('config', 'simulated', 'polygon', ...). The CHECK repeats server.symbols.SYMBOL_PATTERN
-- so that no writer, whatever its validation, can store a symbol the API would reject.
CREATE TABLE symbols (
    symbol      text PRIMARY KEY
                CONSTRAINT symbols_symbol_format CHECK (symbol ~ '^[A-Z][A-Z0-9.\-]{0,9}$'),
    name        text NOT NULL DEFAULT '',
    exchange    text NOT NULL DEFAULT '',
    asset_class text NOT NULL DEFAULT 'stocks',
    active      boolean NOT NULL DEFAULT true,
    source      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
