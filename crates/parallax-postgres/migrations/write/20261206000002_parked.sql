-- Events a process manager could not handle for good, parked for a look
-- (`EventStore::park`): one row per consumer and position, so parking the
-- same event again after a crash changes nothing.
CREATE TABLE parked (
    consumer    text        NOT NULL,
    position    bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    error       text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, position)
);
