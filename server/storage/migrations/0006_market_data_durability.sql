-- Market data you can trust through bad input, crashes and restarts (docs/market-data.md).

-- Bars: 1-second bars are stored too (for TICKGRAPH_SECOND_BARS_DAYS days), so a restart
-- can rebuild every timeframe and warm every indicator from what was stored. A bar may
-- have volume 0: its prices come from prints that count for high/low and last but not
-- for volume (the consolidated tape's condition rules). A day's count of prints is a
-- bigint: it is served as a 64-bit Long.
ALTER TABLE bars DROP CONSTRAINT bars_timeframe;
ALTER TABLE bars ADD CONSTRAINT bars_timeframe CHECK (timeframe IN ('1s', '1m', '1d'));
ALTER TABLE bars DROP CONSTRAINT bars_counts;
ALTER TABLE bars ADD CONSTRAINT bars_counts CHECK (volume >= 0 AND trades > 0 AND revision >= 0);
ALTER TABLE bars ALTER COLUMN trades TYPE bigint;
-- Retention deletes old 1-second bars of every symbol by time.
CREATE INDEX bars_seconds_by_start ON bars (start_ms) WHERE timeframe = '1s';

-- Alert history holds firings and GAPs: windows in which the server did not evaluate an
-- alert (it was down) and could not re-evaluate it from history afterwards.
ALTER TABLE alert_events ADD COLUMN kind text NOT NULL DEFAULT 'firing'
    CONSTRAINT alert_events_kind CHECK (kind IN ('firing', 'gap'));
-- Cursor pagination walks an owner's (or an alert's) history newest first.
CREATE INDEX alert_events_owner_page ON alert_events (owner, fired_at DESC, id DESC);
CREATE INDEX alert_events_alert_page ON alert_events (alert_id, fired_at DESC, id DESC);
DROP INDEX alert_events_owner;

-- Firings above the tier's rate (per alert, per user) are not delivered; they are
-- counted here and in the next delivered firing.
ALTER TABLE alerts ADD COLUMN suppressed_count bigint NOT NULL DEFAULT 0;

-- The last durable evaluation per symbol: every firing decided on an event of this
-- symbol up to evaluated_ms (exchange time) is committed. Written in the same
-- transaction as the firings (group commit). After a crash, the window from here to the
-- first event after the restart is re-evaluated from history or recorded as a GAP.
CREATE TABLE alert_watermarks (
    symbol       text        PRIMARY KEY,
    evaluated_ms bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
