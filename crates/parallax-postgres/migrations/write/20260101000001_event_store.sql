-- parallax-postgres: the write database. The events table is the outbox.

-- Global positions. Taken only inside parallax_append, under a lock, together
-- with the transaction's id (see below), never by a default.
CREATE SEQUENCE events_position_seq AS bigint;

CREATE TABLE events (
    position       bigint      PRIMARY KEY,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,  -- correlation, causation and command id, actor
    recorded_at    timestamptz NOT NULL,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, stream_version)
);

-- The tail reads by position below the oldest running transaction.
CREATE INDEX events_by_tx ON events (tx_id);

-- Each stream's version: the row appends compare-and-set, and lock.
CREATE TABLE streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL
);

-- Command idempotency keys, written in the append's transaction.
CREATE TABLE idempotency_keys (
    key           text        PRIMARY KEY,
    fingerprint   text        NOT NULL,
    response      text        NOT NULL,
    last_position bigint      NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

-- The newest snapshot of a stream.
CREATE TABLE snapshots (
    stream_id      text        PRIMARY KEY,
    stream_version bigint      NOT NULL,
    schema_version integer     NOT NULL,
    state          text        NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now()
);

-- Positions of consumers that keep theirs in the write DB (process managers).
CREATE TABLE consumer_checkpoints (
    consumer text   PRIMARY KEY,
    position bigint NOT NULL
);

-- One active worker per name (the relay, a process manager): held by a
-- session advisory lock; the epoch fences the checkpoint of a former holder.
CREATE TABLE leases (
    name     text   PRIMARY KEY,
    epoch    bigint NOT NULL,
    position bigint NOT NULL
);

-- Appends a group of requests in one statement (so one transaction and one
-- round trip). `batch` is a JSON array of
--   {"stream_id", "expected": null | version, "key": null | {"key","fingerprint","response"},
--    "events": [{"event_id","event_type","schema_version","payload","metadata","recorded_at"}]}
-- and the answer an array, in the same order, of
--   {"outcome":"appended","first","last","version"} | {"outcome":"conflict","actual"}
--   | {"outcome":"duplicate","fingerprint","response","last"}.
--
-- Gap-free tailing: positions and the transaction id are taken together,
-- first thing, under a lock, so that position order equals transaction-id
-- order. A reader that returns only rows whose tx_id is below the oldest
-- running transaction (pg_snapshot_xmin) can then never see position p
-- while a lower position is still to commit: that lower position would
-- belong to a transaction that took its id earlier, which is then still
-- running, so its id is at least xmin and above every id it returned.
-- Must be the first write of its transaction (it is run as a statement of its own).
CREATE FUNCTION parallax_append(batch jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    total      integer;
    positions  bigint[];
    taken      integer := 0;
    request    jsonb;
    n          integer;
    stream     text;
    expected   bigint;
    new_version bigint;
    actual     bigint;
    stored     record;
    results    jsonb := '[]'::jsonb;
BEGIN
    SELECT coalesce(sum(jsonb_array_length(r -> 'events')), 0) INTO total
      FROM jsonb_array_elements(batch) AS r;
    PERFORM pg_advisory_lock(7254120911);  -- 'parallax' positions
    BEGIN
        PERFORM pg_current_xact_id();
        SELECT array_agg(p ORDER BY p) INTO positions
          FROM (SELECT nextval('events_position_seq') AS p FROM generate_series(1, total)) AS s;
    EXCEPTION WHEN OTHERS THEN
        PERFORM pg_advisory_unlock(7254120911);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(7254120911);

    FOR request IN SELECT value FROM jsonb_array_elements(batch) LOOP
        n := jsonb_array_length(request -> 'events');
        stream := request ->> 'stream_id';
        IF jsonb_typeof(request -> 'key') = 'object' THEN
            INSERT INTO idempotency_keys (key, fingerprint, response, last_position)
            VALUES (request -> 'key' ->> 'key', request -> 'key' ->> 'fingerprint',
                    request -> 'key' ->> 'response', 0)
            ON CONFLICT (key) DO NOTHING;
            IF NOT FOUND THEN
                SELECT fingerprint, response, last_position INTO stored
                  FROM idempotency_keys WHERE key = request -> 'key' ->> 'key';
                results := results || jsonb_build_array(jsonb_build_object(
                    'outcome', 'duplicate', 'fingerprint', stored.fingerprint,
                    'response', stored.response, 'last', stored.last_position));
                taken := taken + n;
                CONTINUE;
            END IF;
        END IF;

        new_version := NULL;
        IF jsonb_typeof(request -> 'expected') = 'null' THEN
            INSERT INTO streams AS s (stream_id, version) VALUES (stream, n)
            ON CONFLICT (stream_id) DO UPDATE SET version = s.version + n
            RETURNING s.version INTO new_version;
        ELSE
            expected := (request ->> 'expected')::bigint;
            IF expected = 0 THEN
                INSERT INTO streams (stream_id, version) VALUES (stream, n)
                ON CONFLICT (stream_id) DO NOTHING
                RETURNING streams.version INTO new_version;
            ELSE
                UPDATE streams SET version = expected + n
                 WHERE stream_id = stream AND streams.version = expected
                RETURNING streams.version INTO new_version;
            END IF;
        END IF;

        IF new_version IS NULL THEN
            SELECT s.version INTO actual FROM streams AS s WHERE s.stream_id = stream;
            IF jsonb_typeof(request -> 'key') = 'object' THEN
                DELETE FROM idempotency_keys WHERE key = request -> 'key' ->> 'key';
            END IF;
            results := results || jsonb_build_array(jsonb_build_object(
                'outcome', 'conflict', 'actual', coalesce(actual, 0)));
            taken := taken + n;
            CONTINUE;
        END IF;

        INSERT INTO events (position, stream_id, stream_version, event_id, event_type,
                            schema_version, payload, metadata, recorded_at)
        SELECT positions[taken + e.i], stream, new_version - n + e.i, (e.v ->> 'event_id')::uuid,
               e.v ->> 'event_type', (e.v ->> 'schema_version')::integer, e.v -> 'payload',
               e.v -> 'metadata', (e.v ->> 'recorded_at')::timestamptz
          FROM jsonb_array_elements(request -> 'events') WITH ORDINALITY AS e(v, i);

        IF jsonb_typeof(request -> 'key') = 'object' THEN
            UPDATE idempotency_keys SET last_position = positions[taken + n]
             WHERE key = request -> 'key' ->> 'key';
        END IF;
        results := results || jsonb_build_array(jsonb_build_object(
            'outcome', 'appended', 'first', positions[taken + 1], 'last', positions[taken + n],
            'version', new_version));
        taken := taken + n;
    END LOOP;
    RETURN results;
END;
$$;
