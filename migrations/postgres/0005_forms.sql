-- Contact-style forms staff define, and what visitors send through them.
CREATE TABLE forms (
    id              TEXT PRIMARY KEY,
    handle          TEXT NOT NULL,
    name            TEXT NOT NULL,
    fields          TEXT NOT NULL,
    notify_email    TEXT,
    redirect_url    TEXT,
    honeypot_field  TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 1,
    CONSTRAINT forms_handle_key UNIQUE (handle)
);

CREATE TABLE form_submissions (
    id         TEXT PRIMARY KEY,
    form_id    TEXT NOT NULL REFERENCES forms (id) ON DELETE CASCADE,
    data       TEXT NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX form_submissions_form_idx ON form_submissions (form_id, id);

-- Newsletter subscribers: pending until they confirm by email (double opt-in). The
-- unsubscribe key goes in every email to them; the confirmation token only as a hash.
CREATE TABLE newsletter_subscribers (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'subscribed', 'unsubscribed')),
    unsubscribe_key    TEXT NOT NULL,
    confirm_token_hash TEXT,
    confirm_expires_at BIGINT,
    source             TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    confirmed_at       BIGINT,
    unsubscribed_at    BIGINT,
    CONSTRAINT newsletter_subscribers_email_key UNIQUE (email),
    CONSTRAINT newsletter_subscribers_unsubscribe_key_key UNIQUE (unsubscribe_key)
);
CREATE INDEX newsletter_subscribers_token_idx ON newsletter_subscribers (confirm_token_hash);
