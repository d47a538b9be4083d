CREATE TABLE customers (
    id                TEXT PRIMARY KEY,
    email             TEXT NOT NULL,
    password_hash     TEXT NOT NULL,
    first_name        TEXT NOT NULL DEFAULT '',
    last_name         TEXT NOT NULL DEFAULT '',
    phone             TEXT,
    email_verified_at INTEGER,
    version           INTEGER NOT NULL DEFAULT 1,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    CONSTRAINT customers_email_key UNIQUE (email)
) STRICT;

CREATE TABLE staff_users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'staff')),
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    disabled_at   INTEGER,
    CONSTRAINT staff_users_email_key UNIQUE (email)
) STRICT;

-- Opaque session tokens, stored as SHA-256 hashes only.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('customer', 'staff')),
    subject_id   TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    idle_secs    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    ip           TEXT,
    user_agent   TEXT,
    CONSTRAINT sessions_token_hash_key UNIQUE (token_hash)
) STRICT;
CREATE INDEX sessions_subject_idx ON sessions (subject_kind, subject_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    token_prefix TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_by   TEXT NOT NULL REFERENCES staff_users (id),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    CONSTRAINT api_keys_token_hash_key UNIQUE (token_hash)
) STRICT;

-- Single-use tokens mailed to customers: email verification and password reset.
CREATE TABLE customer_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL,
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    CONSTRAINT customer_tokens_token_hash_key UNIQUE (token_hash)
) STRICT;
CREATE INDEX customer_tokens_customer_idx ON customer_tokens (customer_id, purpose);

CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY,
    actor_kind TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject_id TEXT,
    detail     TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
) STRICT;
