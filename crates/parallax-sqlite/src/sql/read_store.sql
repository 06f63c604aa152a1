-- parallax-sqlite: the read store (views), a database file of its own.
-- Applied at every open; every statement is idempotent. Views can always be
-- rebuilt from the event store, so a file of an older layout is dropped and
-- rebuilt rather than migrated (see `SqliteReadStore::open`).

-- Documents of one partition are ordered by clustering key with SQLite's
-- default BINARY collation: memcmp of the UTF-8 bytes, the port's order.
CREATE TABLE IF NOT EXISTS documents (
    view       TEXT    NOT NULL,
    partition  TEXT    NOT NULL,
    clustering TEXT    NOT NULL,
    body       TEXT    NOT NULL,              -- JSON
    revision   INTEGER NOT NULL,              -- fresh on every write
    PRIMARY KEY (view, partition, clustering)
) STRICT, WITHOUT ROWID;

-- One per projection and source partition, committed in the same transaction
-- as the view writes they cover.
CREATE TABLE IF NOT EXISTS checkpoints (
    projection       TEXT    NOT NULL,
    source_partition INTEGER NOT NULL,
    position         INTEGER NOT NULL,        -- highest position absorbed
    source_offset    INTEGER NOT NULL,        -- where the source resumes
    PRIMARY KEY (projection, source_partition)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dead_letters (
    projection  TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,             -- hyphenated UUID
    event_type  TEXT    NOT NULL,
    error       TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL              -- microseconds since the Unix epoch, UTC
) STRICT;

CREATE INDEX IF NOT EXISTS dead_letters_by_projection ON dead_letters (projection, position);

PRAGMA user_version = 2;
