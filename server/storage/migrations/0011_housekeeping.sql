-- Scheduled housekeeping (server.housekeeping): one row per job, the last round run by
-- any process of the deployment. A process runs a round only under the job's advisory
-- lock and only when the last one started at least one interval ago, so with several
-- processes each round runs once, whichever process gets there first.

CREATE TABLE housekeeping_runs (
    job          text        PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    outcome      text        CONSTRAINT housekeeping_outcome CHECK (outcome IN ('ok', 'failed')),
    detail       text,
    -- host:pid of the process that ran it, for the operator reading this table.
    runner       text        NOT NULL
);
