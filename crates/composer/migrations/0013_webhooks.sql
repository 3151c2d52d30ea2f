-- Webhook endpoints: each reads the organization's feed from its own cursor (fanned out by
-- whichever replica locks it), and gets one delivery per event, retried on a schedule.
CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    organization_id text NOT NULL,
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- Empty: every event type.
    event_types text[] NOT NULL DEFAULT '{}',
    -- whsec_…: the key the signatures are made with; the previous one still signs for a day
    -- after a rotation.
    secret text NOT NULL,
    previous_secret text,
    previous_until timestamptz,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text NOT NULL DEFAULT '',
    -- The feed position fanned out up to.
    cursor_tx xid8 NOT NULL,
    cursor_seq bigint NOT NULL,
    -- Since when every attempt has failed.
    failing_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoints_url UNIQUE (organization_id, url)
);

CREATE TABLE webhook_deliveries (
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id text NOT NULL,
    event_type text NOT NULL,
    -- sms.v1.FeedEvent, with its cursor.
    payload bytea NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    -- Attempts since it was scheduled (or replayed).
    attempts integer NOT NULL DEFAULT 0,
    -- When it is due; while an attempt is under way, when that attempt's lease ends.
    next_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_at)
    WHERE state = 'pending';

CREATE TABLE webhook_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id text NOT NULL,
    event_type text NOT NULL,
    attempt integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    -- NULL: no HTTP answer.
    http_status integer,
    error text NOT NULL DEFAULT '',
    response text NOT NULL DEFAULT '',
    outcome text NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed')),
    next_attempt_at timestamptz
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
