-- Statuses, directions, kinds, encodings and media states get types of their own: a row can
-- hold only a value the code knows, and the code reads each as its Rust type (sms-core's
-- Status, Direction, NumberKind, Encoding), never as a string.
-- And the fingerprint of the request that created a message with an idempotency key, so a
-- reused key with a different request is refused instead of returning the first message.

CREATE TYPE message_status AS ENUM (
    'accepted', 'scheduled', 'queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed',
    'canceled', 'received'
);
CREATE TYPE message_direction AS ENUM ('outbound', 'inbound');
CREATE TYPE message_encoding AS ENUM ('gsm7', 'ucs2');
CREATE TYPE number_kind AS ENUM ('internal', 'external');
CREATE TYPE message_kind AS ENUM ('sms', 'mms');
CREATE TYPE media_state AS ENUM ('stored', 'failed');

-- Partial indexes name the old text values: dropped here, made again below.
DROP INDEX messages_accepted;
DROP INDEX messages_org_errors;
DROP INDEX messages_unpublished_schedules;
DROP INDEX messages_inbound_sid_key;
DROP INDEX messages_inbox;

ALTER TABLE messages DROP CONSTRAINT messages_direction_check;
ALTER TABLE messages
    ALTER COLUMN status TYPE message_status USING status::message_status,
    ALTER COLUMN direction TYPE message_direction USING direction::message_direction,
    ALTER COLUMN encoding TYPE message_encoding
        USING (CASE encoding WHEN 'GSM-7' THEN 'gsm7' ELSE 'ucs2' END)::message_encoding;
ALTER TABLE messages ADD COLUMN request_hash bytea;

ALTER TABLE message_status_history
    ALTER COLUMN status TYPE message_status USING status::message_status;

ALTER TABLE numbers DROP CONSTRAINT numbers_kind_check;
ALTER TABLE numbers ALTER COLUMN kind TYPE number_kind USING kind::number_kind;

ALTER TABLE usage DROP CONSTRAINT usage_kind_check;
ALTER TABLE usage
    ALTER COLUMN kind TYPE message_kind USING kind::message_kind,
    ALTER COLUMN encoding TYPE message_encoding
        USING (CASE encoding WHEN 'GSM-7' THEN 'gsm7' ELSE 'ucs2' END)::message_encoding;

ALTER TABLE media DROP CONSTRAINT media_state_check;
ALTER TABLE media ALTER COLUMN state TYPE media_state USING state::media_state;

CREATE INDEX messages_accepted ON messages (updated_at) WHERE status = 'accepted';
CREATE INDEX messages_org_errors ON messages (organization_id, created_at DESC)
    WHERE status IN ('failed', 'undelivered');
CREATE INDEX messages_unpublished_schedules ON messages (updated_at)
    WHERE status = 'scheduled' AND NOT schedule_published;
CREATE UNIQUE INDEX messages_inbound_sid_key ON messages (organization_id, carrier_sid)
    WHERE direction = 'inbound';
CREATE INDEX messages_inbox ON messages (organization_id, to_number, created_at DESC, id DESC)
    WHERE direction = 'inbound';
