-- parallax-postgres: the read database (views).

-- Documents of one partition are ordered by clustering key in byte order
-- (COLLATE "C"), the read store port's order.
CREATE TABLE documents (
    view       text   NOT NULL,
    partition  text   NOT NULL,
    clustering text   COLLATE "C" NOT NULL,
    body       jsonb  NOT NULL,
    revision   bigint NOT NULL,  -- fresh on every write
    PRIMARY KEY (view, partition, clustering)
);

-- One per projection and source partition, committed in the same
-- transaction as the view writes they cover.
CREATE TABLE checkpoints (
    projection       text    NOT NULL,
    source_partition integer NOT NULL,
    position         bigint  NOT NULL,  -- highest position absorbed
    source_offset    bigint  NOT NULL,  -- where the source resumes
    PRIMARY KEY (projection, source_partition)
);

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection  text        NOT NULL,
    position    bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    error       text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dead_letters_by_projection ON dead_letters (projection, position);
