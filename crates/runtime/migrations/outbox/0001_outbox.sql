-- Events waiting for JetStream, written in the transaction of the change they announce. The
-- relay publishes them in id order (event_id as Nats-Msg-Id) and deletes them once JetStream
-- acknowledged them. Created in the schema of the service that uses it (the pool's
-- search_path), with its own migration history (_outbox_migrations).
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    text        NOT NULL,
    subject     text        NOT NULL,
    event_type  text        NOT NULL,
    payload     bytea       NOT NULL,
    traceparent text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text
);
