-- AI analyses (server.analysis) and the preferences that shape them.
--
-- Every analysis attempt is one row, from the moment it is admitted: 'running' rows
-- hold a place in the user's daily quota while they stream; 'completed' ones carry
-- the snapshot the analyst saw (canonical JSON), the checked result and the usage;
-- 'failed' ones (the provider was unavailable, the answer was invalid) and
-- 'cancelled' ones (the user stopped listening) keep their error and whatever tokens
-- were spent, for the usage shown to the user. Only rows with charged = true count
-- against the quota: completed analyses that called the analyst, and cancelled ones
-- after the analyst had started writing; a failure is never charged, a cached answer
-- costs nothing.

ALTER TABLE users
    ADD COLUMN analysis_style  text
        CONSTRAINT users_analysis_style CHECK (analysis_style IN ('day', 'swing', 'position')),
    ADD COLUMN risk_tolerance  text
        CONSTRAINT users_risk_tolerance CHECK (risk_tolerance IN ('low', 'medium', 'high'));

CREATE TABLE analyses (
    id                 uuid        PRIMARY KEY,
    user_id            uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- A ticker, or 'portfolio' for a review.
    subject            text        NOT NULL
                       CONSTRAINT analyses_subject_length CHECK (length(subject) BETWEEN 1 AND 16),
    question           text        NOT NULL DEFAULT ''
                       CONSTRAINT analyses_question_length CHECK (length(question) <= 1000),
    -- The question as the cache compares it (trimmed, spaces collapsed, case folded).
    question_key       text        NOT NULL DEFAULT '',
    -- 'rule-based' or the model id.
    analyst            text        NOT NULL,
    status             text        NOT NULL DEFAULT 'running'
                       CONSTRAINT analyses_status
                       CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    charged            boolean     NOT NULL DEFAULT false,
    cached             boolean     NOT NULL DEFAULT false,
    -- SHA-256 (hex) of the snapshot's canonical JSON.
    fingerprint        text,
    snapshot           jsonb,
    result             jsonb,
    input_tokens       integer     NOT NULL DEFAULT 0,
    output_tokens      integer     NOT NULL DEFAULT 0,
    cache_read_tokens  integer     NOT NULL DEFAULT 0,
    cache_write_tokens integer     NOT NULL DEFAULT 0,
    -- Estimated, in US dollars; NULL when the model's prices are unknown.
    cost_usd           numeric(14, 6),
    error_code         text,
    error_message      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    CONSTRAINT analyses_finished CHECK ((status = 'running') = (finished_at IS NULL)),
    CONSTRAINT analyses_completed_has_result
        CHECK (status <> 'completed' OR (result IS NOT NULL AND snapshot IS NOT NULL))
);

-- A user's history, newest first (keyset pagination on (created_at, id)), and the
-- day's quota and usage (created_at >= the day's start).
CREATE INDEX analyses_user_created ON analyses (user_id, created_at DESC, id DESC);

-- The answer cache: a completed, uncached answer for the same subject, snapshot,
-- question and analyst, younger than the cache's time to live.
CREATE INDEX analyses_cache ON analyses (subject, fingerprint, question_key, analyst, created_at DESC)
    WHERE status = 'completed' AND NOT cached;
