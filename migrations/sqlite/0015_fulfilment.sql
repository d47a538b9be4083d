-- Parcels: lines of an order packed at a location, then shipped with tracking, then delivered.
CREATE TABLE order_fulfillments (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status          TEXT NOT NULL CHECK (status IN ('fulfilled', 'shipped', 'delivered')),
    location_id     TEXT NOT NULL,
    -- [{"line_id": ..., "quantity": n}]
    lines           TEXT NOT NULL,
    carrier         TEXT NOT NULL DEFAULT '',
    tracking_number TEXT NOT NULL DEFAULT '',
    tracking_url    TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    shipped_at      INTEGER,
    delivered_at    INTEGER
) STRICT;
CREATE INDEX order_fulfillments_order_idx ON order_fulfillments (order_id, id);

-- Money given back, through the payment's provider.
CREATE TABLE order_refunds (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    payment_id   TEXT NOT NULL,
    amount       INTEGER NOT NULL CHECK (amount > 0),
    reason       TEXT NOT NULL DEFAULT '',
    lines        TEXT NOT NULL DEFAULT '[]',
    shipping     INTEGER NOT NULL DEFAULT 0,
    provider_ref TEXT,
    created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX order_refunds_order_idx ON order_refunds (order_id, id);

-- Goods sent back by the customer.
CREATE TABLE order_returns (
    id         TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    lines      TEXT NOT NULL,
    restocked  INTEGER NOT NULL CHECK (restocked IN (0, 1)),
    reason     TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX order_returns_order_idx ON order_returns (order_id, id);
