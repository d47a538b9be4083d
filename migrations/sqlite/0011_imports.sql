-- Product files staff upload, imported by a background job.
CREATE TABLE imports (
    id           TEXT PRIMARY KEY,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    dry_run      INTEGER NOT NULL,
    skip_invalid INTEGER NOT NULL,
    content      TEXT NOT NULL,
    report       TEXT,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
) STRICT;
