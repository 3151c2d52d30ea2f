-- Outbound messages whose status stopped moving short of a final one (queued, sending, sent:
-- a callback may have been lost) are looked up at the carrier through the dispatcher. One row
-- per message asked about: how often, and when it may be asked about again (the interval
-- doubles, up to a cap).
CREATE TABLE status_checks (
    message_id uuid        PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    checks     integer     NOT NULL,
    next_at    timestamptz NOT NULL
);

-- Messages in flight, oldest change first: a small index (most messages leave these statuses
-- within seconds).
CREATE INDEX messages_in_flight ON messages (updated_at)
    WHERE direction = 'outbound' AND status IN ('queued', 'sending', 'sent');
