-- Users' own broker accounts (docs/alpaca.md, "Linked accounts").
--
-- One linked account per user. The secret is sealed with AES-256-GCM under
-- TICKGRAPH_SECRETS_KEY (server.auth.sealing), bound to the owner and key id; it is
-- never returned, and unlinking deletes the row.
CREATE TABLE broker_accounts (
    owner           text        PRIMARY KEY,
    broker          text        NOT NULL CONSTRAINT broker_accounts_broker
                    CHECK (broker IN ('alpaca')),
    key_id          text        NOT NULL,
    secret_sealed   bytea       NOT NULL,
    live            boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Differences a reconciliation found between our books and the broker's: recorded,
-- never silently overwritten.
CREATE TABLE broker_corrections (
    id          bigserial   PRIMARY KEY,
    owner       text,
    broker      text        NOT NULL,
    what        text        NOT NULL,
    order_id    text,
    kind        text,
    detail      text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX broker_corrections_owner ON broker_corrections (owner, id);
