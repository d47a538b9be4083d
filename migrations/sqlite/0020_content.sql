-- Pages and blog posts: Markdown kept as written and as sanitised HTML, a status with the
-- time it is (or will be) published, and what search engines and social cards read.
CREATE TABLE content (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('post', 'page')),
    slug             TEXT NOT NULL,
    title            TEXT NOT NULL,
    body             TEXT NOT NULL DEFAULT '',
    body_html        TEXT NOT NULL DEFAULT '',
    excerpt          TEXT NOT NULL DEFAULT '',
    cover_media_id   TEXT REFERENCES media (id) ON DELETE SET NULL,
    cover_alt        TEXT NOT NULL DEFAULT '',
    tags             TEXT NOT NULL DEFAULT '[]',
    status           TEXT NOT NULL CHECK (status IN ('draft', 'scheduled', 'published')),
    published_at     INTEGER,
    meta_title       TEXT NOT NULL DEFAULT '',
    meta_description TEXT NOT NULL DEFAULT '',
    canonical_url    TEXT NOT NULL DEFAULT '',
    noindex          INTEGER NOT NULL DEFAULT 0 CHECK (noindex IN (0, 1)),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT content_slug_key UNIQUE (kind, slug),
    CHECK (status = 'draft' OR published_at IS NOT NULL)
) STRICT;

-- What shoppers see, newest first.
CREATE INDEX content_shown_idx ON content (kind, published_at DESC, id DESC) WHERE status <> 'draft';

-- The staff members who wrote each entry, in order.
CREATE TABLE content_authors (
    content_id TEXT NOT NULL REFERENCES content (id) ON DELETE CASCADE,
    staff_id   TEXT NOT NULL REFERENCES staff_users (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    PRIMARY KEY (content_id, staff_id)
) STRICT;
CREATE INDEX content_authors_staff_idx ON content_authors (staff_id);

-- Each entry's tags by their slug, for the tag pages.
CREATE TABLE content_tags (
    content_id TEXT NOT NULL REFERENCES content (id) ON DELETE CASCADE,
    tag_slug   TEXT NOT NULL,
    PRIMARY KEY (content_id, tag_slug)
) STRICT;
CREATE INDEX content_tags_slug_idx ON content_tags (tag_slug);

-- Slugs an entry had before, so that old addresses lead to the new one.
CREATE TABLE content_slug_history (
    kind       TEXT NOT NULL,
    slug       TEXT NOT NULL,
    content_id TEXT NOT NULL REFERENCES content (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (kind, slug)
) STRICT;
