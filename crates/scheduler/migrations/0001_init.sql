-- The scheduler's schema: scheduled sends, kept until they fire.

CREATE TABLE scheduled (
    message_id      uuid PRIMARY KEY,
    organization_id text        NOT NULL,
    send_at         timestamptz NOT NULL,
    message         bytea       NOT NULL, -- the OutboundMessage, protobuf-encoded
    -- pending: waiting; firing: claimed by a replica (until claimed_at + lease);
    -- fired: handed to the dispatcher; canceled: will never fire.
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'firing', 'fired', 'canceled')),
    claimed_at      timestamptz,
    fired_at        timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scheduled_due ON scheduled (send_at) WHERE state IN ('pending', 'firing');
