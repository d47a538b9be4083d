-- What a payment attempt was for, so that it can be finished later (after 3-D Secure, or by
-- the provider's webhook when the shopper's browser never comes back): the cart as priced,
-- and the request's key and fingerprint.
ALTER TABLE payments ADD COLUMN snapshot TEXT;
ALTER TABLE payments ADD COLUMN request_hash TEXT;
ALTER TABLE payments ADD COLUMN idempotency_key TEXT;
CREATE INDEX payments_provider_ref_idx ON payments (provider_ref);

-- Provider webhook events, each applied once.
CREATE TABLE payment_events (
    id           TEXT PRIMARY KEY,
    provider     TEXT NOT NULL,
    type         TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    processed_at INTEGER
) STRICT;
