-- A customer's saved addresses, one of them the default that checkout starts from.
CREATE TABLE customer_addresses (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    -- The address as JSON, normalised and checked as checkout does.
    address     TEXT NOT NULL,
    is_default  INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX customer_addresses_by_customer ON customer_addresses (customer_id, created_at);
