-- The dispatcher's schema: one row per message it has taken on, so that no message is ever
-- sent twice, whatever the bus redelivers.

CREATE TABLE sends (
    message_id      uuid PRIMARY KEY,
    organization_id text        NOT NULL,
    -- sending: a carrier call is (or was) in progress; retry: waiting to try again;
    -- sent: the carrier took it; failed: given up.
    state           text        NOT NULL CHECK (state IN ('sending', 'retry', 'sent', 'failed')),
    attempts        integer     NOT NULL DEFAULT 1,
    carrier_sid     text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
