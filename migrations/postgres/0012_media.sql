-- Images, kept only as the variants made from them (re-encoded, so nothing of the upload
-- but its pixels is ever served). The same picture uploaded twice is one row.
CREATE TABLE media (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    format     TEXT NOT NULL,
    width      BIGINT NOT NULL,
    height     BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    variants   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT media_hash_key UNIQUE (hash)
);

-- A product's images, in order, each with its alternative text.
CREATE TABLE product_images (
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    media_id   TEXT NOT NULL REFERENCES media (id),
    position   BIGINT NOT NULL,
    alt        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (product_id, media_id)
);
CREATE INDEX product_images_media_idx ON product_images (media_id);
