-- Inbound messages on conversations and in inboxes.

ALTER TABLE messages ADD COLUMN done boolean NOT NULL DEFAULT false;
-- Carriers retry webhooks: one inbound message per carrier id.
CREATE UNIQUE INDEX messages_inbound_sid_key ON messages (organization_id, carrier_sid)
    WHERE direction = 'inbound';
-- A conversation is one of our numbers and a contact, both directions.
CREATE INDEX messages_conversation ON messages
    (organization_id, least(from_number, to_number), greatest(from_number, to_number), created_at, id);
CREATE INDEX messages_inbox ON messages (organization_id, to_number, created_at DESC, id DESC)
    WHERE direction = 'inbound';
