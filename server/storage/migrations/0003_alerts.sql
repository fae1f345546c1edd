-- Users' alerts and the history of their firings.
--
-- An alert's definition is stored as the validated JSON document the API accepted,
-- so the engine re-arms exactly what the user asked for after a restart. The owner
-- column is text: users get their own table later; until then everything belongs to
-- the local user.

CREATE TABLE alerts (
    id              uuid PRIMARY KEY,
    owner           text        NOT NULL,
    symbol          text        NOT NULL,
    definition      jsonb       NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    -- A ONCE alert that fired, or an alert past its expiry: kept for history, never re-armed.
    done            boolean     NOT NULL DEFAULT false,
    expires_at      timestamptz,
    -- What the engine needs to stay exactly-once across a restart.
    last_fired_key  text,
    last_fired_at   timestamptz,
    fire_count      integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX alerts_owner ON alerts (owner, created_at);
CREATE INDEX alerts_armed ON alerts (symbol) WHERE enabled AND NOT done;

-- No foreign key to alerts: the history outlives a deleted alert.
CREATE TABLE alert_events (
    id          bigserial   PRIMARY KEY,
    alert_id    uuid        NOT NULL,
    owner       text        NOT NULL,
    symbol      text        NOT NULL,
    -- The engine's dedup key for this firing ("once", a bar start, a fire sequence):
    -- unique per alert, so a replayed firing is written at most once.
    dedup_key   text        NOT NULL,
    fired_at    timestamptz NOT NULL,
    payload     jsonb       NOT NULL,
    UNIQUE (alert_id, dedup_key)
);

CREATE INDEX alert_events_owner ON alert_events (owner, fired_at DESC);
