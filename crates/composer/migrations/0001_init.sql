-- The composer's schema: numbers, groups, messages and their status history.
-- Every row that belongs to a customer carries its organization id.

CREATE TABLE numbers (
    id              uuid PRIMARY KEY,
    organization_id text        NOT NULL,
    number          text        NOT NULL, -- E.164
    region          text        NOT NULL, -- ISO region, e.g. US, GG
    number_type     text        NOT NULL, -- sms-core NumberType, snake_case
    sms_capable     boolean     NOT NULL,
    mms_capable     boolean     NOT NULL,
    voice_capable   boolean     NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('internal', 'external')),
    owner_user_id   text,
    owner_group_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    released_at     timestamptz,
    CONSTRAINT numbers_one_owner CHECK ((owner_user_id IS NULL) <> (owner_group_id IS NULL))
);
-- A number is held by at most one organization at a time (a released one can be rented again).
CREATE UNIQUE INDEX numbers_number_key ON numbers (number) WHERE released_at IS NULL;
CREATE INDEX numbers_org ON numbers (organization_id, created_at);

CREATE TABLE group_members (
    organization_id text NOT NULL,
    group_id        text NOT NULL,
    user_id         text NOT NULL,
    PRIMARY KEY (organization_id, group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (organization_id, user_id);

CREATE TABLE messages (
    id                 uuid PRIMARY KEY,
    organization_id    text        NOT NULL,
    user_id            text        NOT NULL DEFAULT '',
    direction          text        NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    from_number        text        NOT NULL,
    to_number          text        NOT NULL,
    body               text        NOT NULL,
    status             text        NOT NULL,
    reason             text,
    carrier_error_code integer,
    encoding           text        NOT NULL,
    segments           integer     NOT NULL,
    characters         integer     NOT NULL,
    carrier_sid        text,
    lead_id            text,
    contact_id         text,
    idempotency_key    text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX messages_idempotency_key
    ON messages (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_org_created ON messages (organization_id, created_at DESC, id DESC);
-- The re-publisher looks for messages stuck in `accepted`.
CREATE INDEX messages_accepted ON messages (updated_at) WHERE status = 'accepted';

CREATE TABLE message_status_history (
    message_id         uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq                bigint      GENERATED ALWAYS AS IDENTITY,
    status             text        NOT NULL,
    reason             text,
    carrier_error_code integer,
    occurred_at        timestamptz NOT NULL,
    event_id           text        NOT NULL,
    PRIMARY KEY (message_id, seq)
);
CREATE UNIQUE INDEX message_status_history_event ON message_status_history (message_id, event_id);
