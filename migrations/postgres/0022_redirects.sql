-- Addresses the site answers with a redirect or "gone" when nothing else answers them: an
-- exact path, or every path under a prefix (`from` ending in `*`).
CREATE TABLE redirects (
    id         TEXT PRIMARY KEY,
    from_path  TEXT NOT NULL,
    to_url     TEXT NOT NULL DEFAULT '',
    status     BIGINT NOT NULL CHECK (status IN (301, 302, 410)),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 1,
    CONSTRAINT redirects_from_path_key UNIQUE (from_path)
);
