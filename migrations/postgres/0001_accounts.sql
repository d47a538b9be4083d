CREATE TABLE customers (
    id                TEXT PRIMARY KEY,
    email             TEXT NOT NULL,
    password_hash     TEXT NOT NULL,
    first_name        TEXT NOT NULL DEFAULT '',
    last_name         TEXT NOT NULL DEFAULT '',
    phone             TEXT,
    email_verified_at BIGINT,
    version           BIGINT NOT NULL DEFAULT 1,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CONSTRAINT customers_email_key UNIQUE (email)
);

CREATE TABLE staff_users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'staff')),
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    disabled_at   BIGINT,
    CONSTRAINT staff_users_email_key UNIQUE (email)
);

-- Opaque session tokens, stored as SHA-256 hashes only.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('customer', 'staff')),
    subject_id   TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    idle_secs    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    ip           TEXT,
    user_agent   TEXT,
    CONSTRAINT sessions_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX sessions_subject_idx ON sessions (subject_kind, subject_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    token_prefix TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_by   TEXT NOT NULL REFERENCES staff_users (id),
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    CONSTRAINT api_keys_token_hash_key UNIQUE (token_hash)
);

-- Single-use tokens mailed to customers: email verification and password reset.
CREATE TABLE customer_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL,
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    CONSTRAINT customer_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX customer_tokens_customer_idx ON customer_tokens (customer_id, purpose);

CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY,
    actor_kind TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject_id TEXT,
    detail     TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
