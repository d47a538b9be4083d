-- Where stock is kept. Every shop starts with one location.
CREATE TABLE locations (
    id         TEXT PRIMARY KEY,
    code       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT locations_code_key UNIQUE (code)
);
INSERT INTO locations (id, code, name, created_at) VALUES ('loc_default', 'default', 'Default location', 0);

-- How a variant's stock is kept: `deny` refuses to sell what is not there, `continue` takes
-- backorders. Below `low_stock_threshold` available units, the variant is low on stock.
ALTER TABLE product_variants ADD COLUMN inventory_policy TEXT NOT NULL DEFAULT 'deny';
ALTER TABLE product_variants ADD COLUMN low_stock_threshold BIGINT NOT NULL DEFAULT 5;

-- The ledger: every change to stock, never updated or deleted.
CREATE TABLE inventory_movements (
    id          TEXT PRIMARY KEY,
    variant_id  TEXT NOT NULL REFERENCES product_variants (id) ON DELETE CASCADE,
    location_id TEXT NOT NULL REFERENCES locations (id),
    quantity    BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('received', 'sold', 'returned', 'adjusted')),
    reason      TEXT NOT NULL DEFAULT '',
    reference   TEXT,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX inventory_movements_variant_idx ON inventory_movements (variant_id, id);

-- Per variant and location: on hand (the sum of the ledger, kept in the same transaction as
-- each movement) and reserved (the sum of active reservations).
CREATE TABLE inventory_levels (
    variant_id  TEXT NOT NULL REFERENCES product_variants (id) ON DELETE CASCADE,
    location_id TEXT NOT NULL REFERENCES locations (id),
    on_hand     BIGINT NOT NULL DEFAULT 0,
    reserved    BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (variant_id, location_id)
);

-- Stock held for a checkout until it is committed (sold), released, or expires.
CREATE TABLE inventory_reservations (
    id          TEXT PRIMARY KEY,
    variant_id  TEXT NOT NULL REFERENCES product_variants (id) ON DELETE CASCADE,
    location_id TEXT NOT NULL REFERENCES locations (id),
    quantity    BIGINT NOT NULL CHECK (quantity > 0),
    status      TEXT NOT NULL CHECK (status IN ('active', 'committed', 'released', 'expired')),
    reference   TEXT,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX inventory_reservations_expiry_idx ON inventory_reservations (expires_at) WHERE status = 'active';
