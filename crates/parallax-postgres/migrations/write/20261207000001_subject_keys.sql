-- The keys of data subjects (crypto-shredding, `KeyStore`): one AES-256 key
-- per subject (a customer). Forgetting a subject deletes its row and
-- rewrites the table (`VACUUM FULL`), so the key's bytes leave the table's
-- files instead of waiting in a dead tuple; see `parallax-postgres`'s
-- `keys` module for what remains elsewhere (WAL, backups).
CREATE TABLE subject_keys (
    subject    text        NOT NULL PRIMARY KEY,
    key        bytea       NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
