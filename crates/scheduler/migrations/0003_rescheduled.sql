-- Moved by its sender after it was scheduled: the validity it was stored with no longer holds
-- (it runs from the new time).
ALTER TABLE scheduled ADD COLUMN rescheduled boolean NOT NULL DEFAULT false;
