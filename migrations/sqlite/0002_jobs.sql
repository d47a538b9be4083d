-- The durable job queue, written in the same transaction as the change that causes a job.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout_secs INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    locked_by    TEXT,
    locked_until INTEGER,
    dedupe_key   TEXT,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
) STRICT;
CREATE INDEX jobs_due_idx ON jobs (status, run_at);
-- At most one live job per de-duplication key.
CREATE UNIQUE INDEX jobs_dedupe_key_key ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running');

-- Recurring jobs: the next time each is due, advanced by whichever node enqueues it.
CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,
    cron        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    next_run_at INTEGER NOT NULL
) STRICT;
