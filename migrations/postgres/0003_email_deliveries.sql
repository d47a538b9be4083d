-- Every email a mail server (or the file transport) accepted, for staff to look up.
CREATE TABLE email_deliveries (
    job_id       TEXT PRIMARY KEY,
    recipient    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    delivered_at BIGINT NOT NULL
);
CREATE INDEX email_deliveries_recipient_idx ON email_deliveries (recipient);
