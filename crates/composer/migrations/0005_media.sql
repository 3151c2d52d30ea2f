-- MMS attachments, stored with their message. PostgreSQL keeps them durable and transactional
-- with the message row (a message is never stored without its attachments, nor the reverse),
-- at sizes MMS allows (5 MB in total per message), with no other store to run.

CREATE TABLE media (
    id              uuid PRIMARY KEY, -- random (v4): it appears in the URLs handed to carriers
    organization_id text        NOT NULL,
    message_id      uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position        integer     NOT NULL,
    file_name       text        NOT NULL,
    content_type    text        NOT NULL,
    size            bigint      NOT NULL,
    data            bytea,
    -- stored, or failed (an inbound attachment that could not be downloaded)
    state           text        NOT NULL CHECK (state IN ('stored', 'failed')),
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_message ON media (message_id, position);

ALTER TABLE messages ADD COLUMN media_count integer NOT NULL DEFAULT 0;
