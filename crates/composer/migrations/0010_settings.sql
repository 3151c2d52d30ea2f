-- An organization's sending settings: quiet hours (a daily window in the recipient's local
-- time) and a daily cap on segments. No row: the defaults (no quiet hours, no cap).
CREATE TABLE settings (
    organization_id text PRIMARY KEY,
    quiet_enabled boolean NOT NULL DEFAULT false,
    quiet_start time NOT NULL DEFAULT '08:00',
    quiet_end time NOT NULL DEFAULT '21:00',
    -- Monday first.
    quiet_days boolean[] NOT NULL DEFAULT '{t,t,t,t,t,t,t}',
    daily_segment_cap bigint CHECK (daily_segment_cap > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Segments of the messages due each day (UTC), counted when they are accepted. `cap` is the cap
-- the last counted message was held to (NULL: none, or a message that is never refused, an
-- opt-out confirmation): a count over it rolls the acceptance back.
CREATE TABLE daily_segments (
    organization_id text NOT NULL,
    day date NOT NULL,
    segments bigint NOT NULL,
    cap bigint,
    PRIMARY KEY (organization_id, day),
    CONSTRAINT daily_segments_within_cap CHECK (cap IS NULL OR segments <= cap)
);
