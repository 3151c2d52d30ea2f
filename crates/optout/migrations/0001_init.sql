-- The opt-out registry's schema: who opted out of which organization's messages.

CREATE TABLE opt_outs (
    organization_id text        NOT NULL,
    contact_number  text        NOT NULL, -- E.164
    opted_out       boolean     NOT NULL,
    our_number      text,
    source          text        NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, contact_number)
);
