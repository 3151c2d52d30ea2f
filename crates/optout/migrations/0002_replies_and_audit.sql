-- Who changed an opt-out by hand and why; automatic replies per organization; inbound
-- messages already handled (carriers retry webhooks).

ALTER TABLE opt_outs ADD COLUMN changed_by text;
ALTER TABLE opt_outs ADD COLUMN reason text;

CREATE TABLE replies (
    organization_id      text PRIMARY KEY,
    help_text            text NOT NULL,
    opt_out_confirmation text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE processed_inbound (
    carrier_sid  text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
