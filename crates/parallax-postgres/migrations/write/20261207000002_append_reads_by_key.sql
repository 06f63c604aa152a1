-- parallax-postgres: the check of an append's "reads" looks each stream up
-- by its key. The function of the migration before joined the reads to
-- `streams`, and the planner, which takes a JSON array for 100 rows, hashed
-- the whole table for each request that named reads: a sequential scan of
-- every stream ever written (every cart and order) per add-item, whose cost
-- grew with the store until it was most of the server's CPU. A scalar
-- subquery per read is an index lookup whatever the table's size. The rest of
-- the function is unchanged (see 20261206000001_append_reads.sql for the
-- argument behind each part).

CREATE OR REPLACE FUNCTION parallax_append(batch jsonb) RETURNS jsonb
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
    moved      record;
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

        IF jsonb_typeof(request -> 'reads') = 'array' THEN
            SELECT checked.stream_id, checked.expected, checked.actual
              INTO moved
              FROM (SELECT r ->> 'stream_id' AS stream_id, (r ->> 'version')::bigint AS expected,
                           coalesce((SELECT s.version FROM streams AS s
                                      WHERE s.stream_id = r ->> 'stream_id'), 0) AS actual
                      FROM jsonb_array_elements(request -> 'reads') AS r) AS checked
             WHERE checked.actual <> checked.expected
             LIMIT 1;
            IF FOUND THEN
                IF jsonb_typeof(request -> 'key') = 'object' THEN
                    DELETE FROM idempotency_keys WHERE key = request -> 'key' ->> 'key';
                END IF;
                results := results || jsonb_build_array(jsonb_build_object(
                    'outcome', 'conflict', 'stream', moved.stream_id,
                    'expected', moved.expected, 'actual', moved.actual));
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
