-- Firing now commits the row's `fired` state and its msg.due event (in the outbox) in one
-- transaction, so no row waits in `firing` with a lease any more. Rows a replica of the
-- previous version left there fire again (the event id is the same; JetStream and the
-- dispatcher's claim drop a repeat).
UPDATE scheduled SET state = 'pending' WHERE state = 'firing';
DROP INDEX scheduled_due;
CREATE INDEX scheduled_due ON scheduled (send_at) WHERE state = 'pending';
