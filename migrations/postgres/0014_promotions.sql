-- Promotions: discount codes, and automatic promotions (no code).
CREATE TABLE promotions (
    id                 TEXT PRIMARY KEY,
    -- Upper case; NULL for an automatic promotion.
    code               TEXT,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('percentage', 'fixed', 'free_shipping', 'buy_x_get_y')),
    -- Basis points for `percentage` and for what `buy_x_get_y` takes off; minor units for `fixed`.
    value              BIGINT NOT NULL DEFAULT 0 CHECK (value >= 0),
    currency           TEXT,
    buy_quantity       BIGINT NOT NULL DEFAULT 0,
    get_quantity       BIGINT NOT NULL DEFAULT 0,
    -- What the cart must hold or be: JSON (min_subtotal, product_ids, category_ids, customer_ids, first_order).
    conditions         TEXT NOT NULL DEFAULT '{}',
    starts_at          BIGINT,
    ends_at            BIGINT,
    usage_limit        BIGINT CHECK (usage_limit > 0),
    per_customer_limit BIGINT CHECK (per_customer_limit > 0),
    times_used         BIGINT NOT NULL DEFAULT 0 CHECK (times_used >= 0),
    -- Whether it applies together with other combinable promotions.
    combinable         BOOLEAN NOT NULL DEFAULT FALSE,
    active             BOOLEAN NOT NULL DEFAULT TRUE,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    version            BIGINT NOT NULL DEFAULT 1,
    CONSTRAINT promotions_code_key UNIQUE (code)
);

-- Each use of a promotion, taken when a checkout holds the cart and kept with its order.
CREATE TABLE promotion_usages (
    id           TEXT PRIMARY KEY,
    promotion_id TEXT NOT NULL REFERENCES promotions (id) ON DELETE CASCADE,
    payment_id   TEXT NOT NULL,
    order_id     TEXT,
    email        TEXT NOT NULL,
    customer_id  TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX promotion_usages_promotion_idx ON promotion_usages (promotion_id, email);
CREATE INDEX promotion_usages_payment_idx ON promotion_usages (payment_id);

-- The codes a shopper entered.
ALTER TABLE carts ADD COLUMN codes TEXT NOT NULL DEFAULT '[]';
-- The discounts an order was given.
ALTER TABLE orders ADD COLUMN discounts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE orders ADD COLUMN shipping_discount BIGINT NOT NULL DEFAULT 0;
