-- Orders, their broker requests and their ledger (docs/trading.md, "Durability").
--
-- An order is written with its outbox row in one transaction before any broker sees it;
-- the relay submits what is in the outbox and removes the row once the broker's answer
-- is in the ledger. Every event a broker reports is appended to order_events, whose
-- seq is the one cursor of a user's order updates; positions and the account are folds
-- of the fills in it. Money is numeric (exact decimals), never a binary float.

-- One trading account per user and broker: where the paper account's cash started.
CREATE TABLE trading_accounts (
    owner           text        NOT NULL,
    broker          text        NOT NULL,
    starting_cash   numeric     NOT NULL CONSTRAINT trading_accounts_cash CHECK (starting_cash >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, broker)
);

CREATE TABLE orders (
    -- Ours, unique forever: what the broker knows the order by (client_order_id at
    -- Alpaca), so a resubmission after a crash is recognised, never doubled.
    id              text        PRIMARY KEY,
    owner           text        NOT NULL,
    broker          text        NOT NULL,
    -- The caller's own id for the order, and the idempotency key of the request that
    -- placed it (a bracket's legs share the request: only its first order holds them).
    client_order_id text,
    idempotency_key text,
    -- SHA-256 of the canonical request: the same key with another request is refused.
    request_digest  bytea,
    order_class     text        NOT NULL,
    role            text        NOT NULL,
    parent_id       text,
    replaces        text,
    symbol          text        NOT NULL,
    -- The order's terms as decimal strings (server.storage.orders: spec_to_doc).
    spec            jsonb       NOT NULL,
    -- Where it came from: 'api' or 'alert' (then alert_id and the firing's key).
    source          text        NOT NULL DEFAULT 'api',
    alert_id        uuid,
    -- What the pre-trade checks valued it at: the reservation it holds while open.
    estimate_price  numeric     NOT NULL,
    created_ms      bigint      NOT NULL,
    -- The fold of its ledger events, kept current by the ledger writer.
    status          text        NOT NULL DEFAULT 'pending_new',
    qty             numeric,
    filled_qty      numeric     NOT NULL DEFAULT 0,
    filled_value    numeric     NOT NULL DEFAULT 0,
    commission      numeric     NOT NULL DEFAULT 0,
    updated_ms      bigint      NOT NULL,
    last_seq        bigint      NOT NULL DEFAULT 0,
    replaced_by     text,
    CONSTRAINT orders_quantities CHECK (filled_qty >= 0 AND commission >= 0)
);
CREATE UNIQUE INDEX orders_idempotency ON orders (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX orders_client_order_id ON orders (owner, client_order_id)
    WHERE client_order_id IS NOT NULL;
-- Pages of a user's orders, newest first.
CREATE INDEX orders_owner_page ON orders (owner, created_ms DESC, id DESC);
-- What is still working (restored into the broker at start-up).
CREATE INDEX orders_open ON orders (owner)
    WHERE status NOT IN ('filled', 'canceled', 'expired', 'replaced', 'rejected');

-- Requests the broker has not answered yet. A row outlives a crash: the next start-up
-- re-issues it (a broker ignores an order id it already has).
CREATE TABLE order_outbox (
    id          bigserial   PRIMARY KEY,
    owner       text        NOT NULL,
    kind        text        NOT NULL CONSTRAINT order_outbox_kind
                CHECK (kind IN ('submit', 'cancel', 'replace')),
    -- submit: the orders of one request; cancel: the order; replace: old then new.
    order_ids   text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The ledger: every event of every order, in the order it was recorded.
CREATE TABLE order_events (
    seq         bigserial   PRIMARY KEY,
    owner       text        NOT NULL,
    order_id    text        NOT NULL REFERENCES orders (id),
    kind        text        NOT NULL,
    status      text        NOT NULL,
    time_ms     bigint      NOT NULL,
    -- server.trading.events.OrderEvent.as_dict(): decimals as strings.
    event       jsonb       NOT NULL,
    -- A fill is booked once, whatever retries or reconciliations deliver it again.
    fill_id     text        UNIQUE,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_owner ON order_events (owner, seq);
CREATE INDEX order_events_order ON order_events (order_id, seq);
