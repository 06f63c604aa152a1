-- parallax-sqlite: the keys of data subjects (crypto-shredding), in the
-- event store's file. Applied at every open; every statement is idempotent.
-- WITHOUT ROWID: a key lives in one b-tree, the one `secure_delete` wipes.
CREATE TABLE IF NOT EXISTS subject_keys (
    subject    TEXT    NOT NULL PRIMARY KEY,
    key        BLOB    NOT NULL,              -- 32 bytes, AES-256
    created_at INTEGER NOT NULL               -- microseconds since the Unix epoch, UTC
) STRICT, WITHOUT ROWID;
