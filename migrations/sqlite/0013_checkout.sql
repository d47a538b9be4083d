-- Regions: countries that share a currency and a way of showing prices (tax included or not).
CREATE TABLE regions (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    currency         TEXT NOT NULL,
    tax_inclusive    INTEGER NOT NULL CHECK (tax_inclusive IN (0, 1)),
    shipping_taxable INTEGER NOT NULL DEFAULT 1 CHECK (shipping_taxable IN (0, 1)),
    is_default       INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE UNIQUE INDEX regions_default_idx ON regions (is_default) WHERE is_default = 1;

-- A country belongs to one region at most.
CREATE TABLE region_countries (
    country   TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions (id) ON DELETE CASCADE
) STRICT;
CREATE INDEX region_countries_region_idx ON region_countries (region_id);

-- Tax rates per country, optionally per subdivision (''), and per tax class.
CREATE TABLE tax_rates (
    id          TEXT PRIMARY KEY,
    country     TEXT NOT NULL,
    subdivision TEXT NOT NULL DEFAULT '',
    tax_class   TEXT NOT NULL,
    rate_bps    INTEGER NOT NULL CHECK (rate_bps BETWEEN 0 AND 100000),
    name        TEXT NOT NULL,
    CONSTRAINT tax_rates_place_key UNIQUE (country, subdivision, tax_class)
) STRICT;

-- Where a set of shipping methods applies: countries or subdivisions ("US", "US-CA"), and
-- optionally postcode patterns ("75*", "SW1A*", "10000-19999").
CREATE TABLE shipping_zones (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    areas      TEXT NOT NULL DEFAULT '[]',
    postcodes  TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1
) STRICT;

-- How a zone's parcels travel and what it costs, in one currency.
CREATE TABLE shipping_methods (
    id         TEXT PRIMARY KEY,
    zone_id    TEXT NOT NULL REFERENCES shipping_zones (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('flat', 'weight', 'subtotal', 'pickup')),
    currency   TEXT NOT NULL,
    amount     INTEGER NOT NULL DEFAULT 0 CHECK (amount >= 0),
    tiers      TEXT NOT NULL DEFAULT '[]',
    free_above INTEGER CHECK (free_above >= 0),
    estimate   TEXT NOT NULL DEFAULT '',
    active     INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
) STRICT;
CREATE INDEX shipping_methods_zone_idx ON shipping_methods (zone_id, position);

-- Whether a customer pays no tax (a reseller, a charity).
ALTER TABLE customers ADD COLUMN tax_exempt INTEGER NOT NULL DEFAULT 0 CHECK (tax_exempt IN (0, 1));

-- Carts: a guest's (its id is the secret that opens it) or a customer's.
CREATE TABLE carts (
    id                 TEXT PRIMARY KEY,
    customer_id        TEXT REFERENCES customers (id) ON DELETE SET NULL,
    region_id          TEXT NOT NULL REFERENCES regions (id),
    email              TEXT,
    shipping_address   TEXT,
    billing_address    TEXT,
    shipping_method_id TEXT,
    status             TEXT NOT NULL CHECK (status IN ('active', 'completed')),
    -- While a checkout is placing the order: the Idempotency-Key and until when it holds.
    checkout_key       TEXT,
    checkout_until     INTEGER,
    order_id           TEXT,
    expires_at         INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    version            INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE INDEX carts_customer_idx ON carts (customer_id, updated_at) WHERE status = 'active';
CREATE INDEX carts_expiry_idx ON carts (expires_at) WHERE status = 'active';

-- A cart's lines. The price last shown to the shopper is kept, to tell them when it changes.
CREATE TABLE cart_lines (
    id            TEXT PRIMARY KEY,
    cart_id       TEXT NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    variant_id    TEXT NOT NULL,
    quantity      INTEGER NOT NULL CHECK (quantity > 0),
    shown_amount  INTEGER,
    created_at    INTEGER NOT NULL,
    CONSTRAINT cart_lines_variant_key UNIQUE (cart_id, variant_id)
) STRICT;

-- Order numbers for people: short and sequential.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO counters (name, value) VALUES ('order_number', 1000);

-- Orders: everything the shopper agreed to, copied from the cart when it was placed.
CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    number             INTEGER NOT NULL,
    cart_id            TEXT NOT NULL,
    idempotency_key    TEXT NOT NULL,
    request_hash       TEXT NOT NULL,
    customer_id        TEXT REFERENCES customers (id) ON DELETE SET NULL,
    email              TEXT NOT NULL,
    region_id          TEXT NOT NULL,
    currency           TEXT NOT NULL,
    tax_inclusive      INTEGER NOT NULL CHECK (tax_inclusive IN (0, 1)),
    tax_exempt         INTEGER NOT NULL CHECK (tax_exempt IN (0, 1)),
    status             TEXT NOT NULL,
    shipping_address   TEXT NOT NULL,
    billing_address    TEXT NOT NULL,
    shipping_method    TEXT NOT NULL,
    subtotal           INTEGER NOT NULL,
    discount_total     INTEGER NOT NULL,
    shipping_total     INTEGER NOT NULL,
    shipping_tax       INTEGER NOT NULL,
    tax_total          INTEGER NOT NULL,
    total              INTEGER NOT NULL,
    paid_total         INTEGER NOT NULL DEFAULT 0,
    refunded_total     INTEGER NOT NULL DEFAULT 0,
    placed_at          INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    version            INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT orders_number_key UNIQUE (number),
    CONSTRAINT orders_cart_id_key UNIQUE (cart_id)
) STRICT;
CREATE INDEX orders_customer_idx ON orders (customer_id, id);
CREATE INDEX orders_email_idx ON orders (email, number);
CREATE INDEX orders_status_idx ON orders (status, id);

CREATE TABLE order_lines (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    variant_id   TEXT NOT NULL,
    product_id   TEXT NOT NULL,
    title        TEXT NOT NULL,
    variant_title TEXT NOT NULL,
    sku          TEXT,
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    unit_amount  INTEGER NOT NULL,
    subtotal     INTEGER NOT NULL,
    discount     INTEGER NOT NULL,
    tax_class    TEXT NOT NULL,
    tax_rate_bps INTEGER NOT NULL,
    tax_name     TEXT NOT NULL,
    tax          INTEGER NOT NULL,
    total        INTEGER NOT NULL
) STRICT;
CREATE INDEX order_lines_order_idx ON order_lines (order_id, position);

-- Every change to an order, with who made it.
CREATE TABLE order_events (
    id         TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    from_status TEXT,
    to_status  TEXT,
    detail     TEXT NOT NULL DEFAULT '{}',
    actor_kind TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX order_events_order_idx ON order_events (order_id, id);

-- Payments: one per attempt to pay for a cart, kept after the order is placed.
CREATE TABLE payments (
    id              TEXT PRIMARY KEY,
    cart_id         TEXT NOT NULL,
    order_id        TEXT,
    provider        TEXT NOT NULL,
    provider_ref    TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'requires_action', 'authorized', 'captured',
                        'partially_refunded', 'refunded', 'voided', 'failed')),
    currency        TEXT NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount >= 0),
    captured_amount INTEGER NOT NULL DEFAULT 0,
    refunded_amount INTEGER NOT NULL DEFAULT 0,
    failure         TEXT,
    reservations    TEXT NOT NULL DEFAULT '[]',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX payments_cart_idx ON payments (cart_id);
CREATE INDEX payments_order_idx ON payments (order_id);
