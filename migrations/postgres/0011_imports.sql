-- Product files staff upload, imported by a background job.
CREATE TABLE imports (
    id           TEXT PRIMARY KEY,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    dry_run      BOOLEAN NOT NULL,
    skip_invalid BOOLEAN NOT NULL,
    content      TEXT NOT NULL,
    report       TEXT,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
