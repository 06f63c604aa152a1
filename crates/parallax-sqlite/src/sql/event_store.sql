-- parallax-sqlite: the event store (write database).
-- Applied at every open; every statement is idempotent.

-- The events table is the outbox. `position` is the rowid: SQLite assigns it
-- inside the single write transaction, so positions become visible in commit
-- order. AUTOINCREMENT: a position is never reused, even if the newest rows
-- were deleted by hand.
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    event_id       TEXT    NOT NULL UNIQUE,   -- hyphenated UUID
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,          -- JSON
    metadata       TEXT    NOT NULL,          -- JSON: correlation, causation, command, actor
    recorded_at    INTEGER NOT NULL,          -- microseconds since the Unix epoch, UTC
    UNIQUE (stream_id, stream_version)
) STRICT;

CREATE TABLE IF NOT EXISTS snapshots (
    stream_id      TEXT    NOT NULL PRIMARY KEY,
    stream_version INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    state          TEXT    NOT NULL           -- JSON
) STRICT, WITHOUT ROWID;

-- Written in the append's own transaction.
CREATE TABLE IF NOT EXISTS idempotency (
    key            TEXT    NOT NULL PRIMARY KEY,
    fingerprint    TEXT    NOT NULL,
    response       TEXT    NOT NULL,
    last_position  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS checkpoints (
    consumer       TEXT    NOT NULL PRIMARY KEY,
    position       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Events a process manager could not handle for good, parked for a look.
CREATE TABLE IF NOT EXISTS parked (
    consumer       TEXT    NOT NULL,
    position       INTEGER NOT NULL,
    event_id       TEXT    NOT NULL,    -- hyphenated UUID
    event_type     TEXT    NOT NULL,
    error          TEXT    NOT NULL,
    PRIMARY KEY (consumer, position)
) STRICT, WITHOUT ROWID;
