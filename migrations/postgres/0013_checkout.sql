-- Regions: countries that share a currency and a way of showing prices (tax included or not).
CREATE TABLE regions (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    currency         TEXT NOT NULL,
    tax_inclusive    BOOLEAN NOT NULL,
    shipping_taxable BOOLEAN NOT NULL DEFAULT TRUE,
    is_default       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    version          BIGINT NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX regions_default_idx ON regions (is_default) WHERE is_default;

-- A country belongs to one region at most.
CREATE TABLE region_countries (
    country   TEXT PRIMARY KEY,
    region_id TEXT NOT NULL REFERENCES regions (id) ON DELETE CASCADE
);
CREATE INDEX region_countries_region_idx ON region_countries (region_id);

-- Tax rates per country, optionally per subdivision (''), and per tax class.
CREATE TABLE tax_rates (
    id          TEXT PRIMARY KEY,
    country     TEXT NOT NULL,
    subdivision TEXT NOT NULL DEFAULT '',
    tax_class   TEXT NOT NULL,
    rate_bps    BIGINT NOT NULL CHECK (rate_bps BETWEEN 0 AND 100000),
    name        TEXT NOT NULL,
    CONSTRAINT tax_rates_place_key UNIQUE (country, subdivision, tax_class)
);

-- Where a set of shipping methods applies: countries or subdivisions ("US", "US-CA"), and
-- optionally postcode patterns ("75*", "SW1A*", "10000-19999").
CREATE TABLE shipping_zones (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    areas      TEXT NOT NULL DEFAULT '[]',
    postcodes  TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 1
);

-- How a zone's parcels travel and what it costs, in one currency.
CREATE TABLE shipping_methods (
    id         TEXT PRIMARY KEY,
    zone_id    TEXT NOT NULL REFERENCES shipping_zones (id) ON DELETE CASCADE,
    position   BIGINT NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('flat', 'weight', 'subtotal', 'pickup')),
    currency   TEXT NOT NULL,
    amount     BIGINT NOT NULL DEFAULT 0 CHECK (amount >= 0),
    tiers      TEXT NOT NULL DEFAULT '[]',
    free_above BIGINT CHECK (free_above >= 0),
    estimate   TEXT NOT NULL DEFAULT '',
    active     BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX shipping_methods_zone_idx ON shipping_methods (zone_id, position);

-- Whether a customer pays no tax (a reseller, a charity).
ALTER TABLE customers ADD COLUMN tax_exempt BOOLEAN NOT NULL DEFAULT FALSE;

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
    checkout_until     BIGINT,
    order_id           TEXT,
    expires_at         BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    version            BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX carts_customer_idx ON carts (customer_id, updated_at) WHERE status = 'active';
CREATE INDEX carts_expiry_idx ON carts (expires_at) WHERE status = 'active';

-- A cart's lines. The price last shown to the shopper is kept, to tell them when it changes.
CREATE TABLE cart_lines (
    id            TEXT PRIMARY KEY,
    cart_id       TEXT NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    variant_id    TEXT NOT NULL,
    quantity      BIGINT NOT NULL CHECK (quantity > 0),
    shown_amount  BIGINT,
    created_at    BIGINT NOT NULL,
    CONSTRAINT cart_lines_variant_key UNIQUE (cart_id, variant_id)
);

-- Order numbers for people: short and sequential (a number taken by a checkout that then
-- failed is not reused).
CREATE SEQUENCE order_numbers START WITH 1001;

-- Orders: everything the shopper agreed to, copied from the cart when it was placed.
CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    number             BIGINT NOT NULL,
    cart_id            TEXT NOT NULL,
    idempotency_key    TEXT NOT NULL,
    request_hash       TEXT NOT NULL,
    customer_id        TEXT REFERENCES customers (id) ON DELETE SET NULL,
    email              TEXT NOT NULL,
    region_id          TEXT NOT NULL,
    currency           TEXT NOT NULL,
    tax_inclusive      BOOLEAN NOT NULL,
    tax_exempt         BOOLEAN NOT NULL,
    status             TEXT NOT NULL,
    shipping_address   TEXT NOT NULL,
    billing_address    TEXT NOT NULL,
    shipping_method    TEXT NOT NULL,
    subtotal           BIGINT NOT NULL,
    discount_total     BIGINT NOT NULL,
    shipping_total     BIGINT NOT NULL,
    shipping_tax       BIGINT NOT NULL,
    tax_total          BIGINT NOT NULL,
    total              BIGINT NOT NULL,
    paid_total         BIGINT NOT NULL DEFAULT 0,
    refunded_total     BIGINT NOT NULL DEFAULT 0,
    placed_at          BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    version            BIGINT NOT NULL DEFAULT 1,
    CONSTRAINT orders_number_key UNIQUE (number),
    CONSTRAINT orders_cart_id_key UNIQUE (cart_id)
);
CREATE INDEX orders_customer_idx ON orders (customer_id, id);
CREATE INDEX orders_email_idx ON orders (email, number);
CREATE INDEX orders_status_idx ON orders (status, id);

CREATE TABLE order_lines (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position     BIGINT NOT NULL,
    variant_id   TEXT NOT NULL,
    product_id   TEXT NOT NULL,
    title        TEXT NOT NULL,
    variant_title TEXT NOT NULL,
    sku          TEXT,
    quantity     BIGINT NOT NULL CHECK (quantity > 0),
    unit_amount  BIGINT NOT NULL,
    subtotal     BIGINT NOT NULL,
    discount     BIGINT NOT NULL,
    tax_class    TEXT NOT NULL,
    tax_rate_bps BIGINT NOT NULL,
    tax_name     TEXT NOT NULL,
    tax          BIGINT NOT NULL,
    total        BIGINT NOT NULL
);
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
    created_at BIGINT NOT NULL
);
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
    amount          BIGINT NOT NULL CHECK (amount >= 0),
    captured_amount BIGINT NOT NULL DEFAULT 0,
    refunded_amount BIGINT NOT NULL DEFAULT 0,
    failure         TEXT,
    reservations    TEXT NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX payments_cart_idx ON payments (cart_id);
CREATE INDEX payments_order_idx ON payments (order_id);
