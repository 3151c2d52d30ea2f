-- Groups of users sharing numbers, SMS templates, and usage (what the carrier bills).

CREATE TABLE groups (
    id              uuid PRIMARY KEY,
    organization_id text        NOT NULL,
    name            text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX groups_name_key ON groups (organization_id, lower(name));

CREATE TABLE templates (
    id              uuid PRIMARY KEY,
    organization_id text        NOT NULL,
    owner_user_id   text        NOT NULL,
    name            text        NOT NULL,
    body            text        NOT NULL,
    shared          boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX templates_org ON templates (organization_id, created_at) WHERE deleted_at IS NULL;

ALTER TABLE messages ADD COLUMN to_region text NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN template_id uuid;
CREATE INDEX messages_org_lead ON messages (organization_id, lead_id, created_at DESC)
    WHERE lead_id IS NOT NULL;
CREATE INDEX messages_org_errors ON messages (organization_id, created_at DESC)
    WHERE status IN ('failed', 'undelivered');

-- One row per message handed to the carrier: what the customer is billed for.
CREATE TABLE usage (
    message_id      uuid PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    organization_id text        NOT NULL,
    month           date        NOT NULL, -- first day of the month (UTC)
    country         text        NOT NULL, -- recipient's region
    kind            text        NOT NULL CHECK (kind IN ('sms', 'mms')),
    encoding        text        NOT NULL,
    segments        integer     NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_org_month ON usage (organization_id, month);
