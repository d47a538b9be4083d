-- Handles a product had before: the storefront sends them on to the current one.
CREATE TABLE product_handle_history (
    handle     TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
) STRICT;
