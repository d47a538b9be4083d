-- What the site says of the shop: its name (empty for the configured one), description,
-- logo, social profiles, contact details, language and its own robots.txt lines. One row.
CREATE TABLE site_settings (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    name            TEXT NOT NULL DEFAULT '',
    description     TEXT NOT NULL DEFAULT '',
    logo_media_id   TEXT REFERENCES media (id) ON DELETE SET NULL,
    logo_alt        TEXT NOT NULL DEFAULT '',
    social          TEXT NOT NULL DEFAULT '{}',
    contact_email   TEXT NOT NULL DEFAULT '',
    contact_phone   TEXT NOT NULL DEFAULT '',
    contact_address TEXT NOT NULL DEFAULT '',
    language        TEXT NOT NULL DEFAULT 'en',
    robots          TEXT NOT NULL DEFAULT '',
    updated_at      INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 1
) STRICT;
INSERT INTO site_settings (id) VALUES (1);

-- Navigation menus ("main", "footer"): their items, nested, as JSON.
CREATE TABLE menus (
    id         TEXT PRIMARY KEY,
    handle     TEXT NOT NULL,
    title      TEXT NOT NULL,
    items      TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT menus_handle_key UNIQUE (handle)
) STRICT;
