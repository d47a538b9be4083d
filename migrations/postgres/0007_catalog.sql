-- Products: what a shop sells. The description is kept as written (Markdown) and as the
-- sanitised HTML it renders to.
CREATE TABLE products (
    id               TEXT PRIMARY KEY,
    handle           TEXT NOT NULL,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    description_html TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL CHECK (status IN ('draft', 'published', 'archived')),
    product_type     TEXT NOT NULL DEFAULT '',
    vendor           TEXT NOT NULL DEFAULT '',
    tags             TEXT NOT NULL DEFAULT '[]',
    options          TEXT NOT NULL DEFAULT '[]',
    seo_title        TEXT NOT NULL DEFAULT '',
    seo_description  TEXT NOT NULL DEFAULT '',
    metadata         TEXT NOT NULL DEFAULT '{}',
    published_at     BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    version          BIGINT NOT NULL DEFAULT 1,
    CONSTRAINT products_handle_key UNIQUE (handle)
);
CREATE INDEX products_status_idx ON products (status, id);

-- A product's tags, one row each, for filtering.
CREATE TABLE product_tags (
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (product_id, tag)
);
CREATE INDEX product_tags_tag_idx ON product_tags (tag, product_id);

-- What a shopper chooses: one row per combination of option values.
CREATE TABLE product_variants (
    id            TEXT PRIMARY KEY,
    product_id    TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    position      BIGINT NOT NULL,
    sku           TEXT,
    barcode       TEXT,
    option_values TEXT NOT NULL DEFAULT '{}',
    weight_grams  BIGINT,
    length_mm     BIGINT,
    width_mm      BIGINT,
    height_mm     BIGINT,
    tax_class     TEXT NOT NULL DEFAULT 'standard',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    CONSTRAINT product_variants_sku_key UNIQUE (sku)
);
CREATE INDEX product_variants_product_idx ON product_variants (product_id, position);

-- A variant's price in each currency, in minor units (cents).
CREATE TABLE variant_prices (
    variant_id        TEXT NOT NULL REFERENCES product_variants (id) ON DELETE CASCADE,
    currency          TEXT NOT NULL,
    amount            BIGINT NOT NULL CHECK (amount >= 0),
    compare_at_amount BIGINT CHECK (compare_at_amount >= 0),
    PRIMARY KEY (variant_id, currency)
);
