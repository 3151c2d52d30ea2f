-- Send later: when a message is due, whether the scheduler has been told, and a free-text
-- detail on status history entries (for instance "fired 12 s late").

ALTER TABLE messages ADD COLUMN send_at timestamptz;
-- False until the scheduled event is stored on the bus; the re-publisher retries those.
ALTER TABLE messages ADD COLUMN schedule_published boolean NOT NULL DEFAULT true;
CREATE INDEX messages_unpublished_schedules ON messages (updated_at)
    WHERE status = 'scheduled' AND NOT schedule_published;
ALTER TABLE message_status_history ADD COLUMN detail text;
