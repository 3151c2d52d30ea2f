-- The CRM's lead and contact for a phone number, per organization: a reply from a number with
-- no conversation yet is attached to them.
CREATE TABLE contacts (
    organization_id text NOT NULL,
    contact_number text NOT NULL,
    lead_id text,
    contact_id text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, contact_number),
    CHECK (lead_id IS NOT NULL OR contact_id IS NOT NULL)
);
