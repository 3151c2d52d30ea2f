-- The organization's event feed: written in the transaction of the change it announces, read
-- in the order of (transaction id, sequence) and only up to the oldest transaction still
-- running, so that a reader never passes an event that commits later.
CREATE TABLE feed (
    organization_id text NOT NULL,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    event_id text NOT NULL,
    occurred_at timestamptz NOT NULL,
    -- sms.v1.FeedEvent without its cursor.
    payload bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, tx, seq)
);
CREATE UNIQUE INDEX feed_event ON feed (organization_id, event_id);
CREATE INDEX feed_age ON feed (written_at);

-- Where each organization's feed now starts: the last event pruned.
CREATE TABLE feed_horizon (
    organization_id text PRIMARY KEY,
    tx xid8 NOT NULL,
    seq bigint NOT NULL
);
