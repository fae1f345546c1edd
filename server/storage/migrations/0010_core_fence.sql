-- Fencing of the leader's writes (docs/scale-out.md). With several processes, one holds
-- the Redis lease and writes the order ledger, alert firings and bars. A process that
-- lost the lease but does not know it yet (paused past its lease, cut off from Redis)
-- must not write after its successor has rebuilt its state from these tables.
--
-- The leader's connections carry its fencing token in the session setting
-- tickgraph.fence (set when they connect). Before a statement changes a fenced table,
-- the trigger checks it against core_fence under FOR SHARE; a new leader raises
-- core_fence (which waits for the statements of the old one that are under way) before
-- it reads anything. Connections without the setting (one process alone, followers)
-- are not checked.
CREATE TABLE core_fence (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    fence bigint NOT NULL,
    holder text NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION tickgraph_check_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mine text := current_setting('tickgraph.fence', true);
    held bigint;
BEGIN
    IF mine IS NULL OR mine = '' THEN
        RETURN NULL;
    END IF;
    SELECT fence INTO held FROM core_fence FOR SHARE;
    IF held IS DISTINCT FROM mine::bigint THEN
        RAISE EXCEPTION 'this process no longer leads: its fence is %, the current one %',
            mine, held USING ERRCODE = 'TGFNC';
    END IF;
    RETURN NULL;
END;
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'orders', 'order_outbox', 'order_events', 'trading_accounts', 'broker_corrections',
        'alert_events', 'alert_watermarks', 'bars'
    ] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION tickgraph_check_fence()',
            t || '_fenced', t
        );
    END LOOP;
END;
$$;
