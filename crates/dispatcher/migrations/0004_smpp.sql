-- SMPP: the parts a message went out as, with the ids the SMSC gave them, and what the SMSC
-- sent back on its binds (receipts, contacts' messages in parts). A `deliver_sm` is answered
-- only once its row (or its effect) is committed: a crash never loses one.

-- One row per part taken by the SMSC. The id in every form a receipt may quote it: as
-- answered (lower case, no leading zeros), and its value read as hexadecimal and as decimal.
CREATE TABLE smpp_parts (
    message_id   uuid        NOT NULL,
    part         smallint    NOT NULL,
    parts        smallint    NOT NULL,
    connection   text        NOT NULL,
    id_text      text        NOT NULL,
    id_hex       text,
    id_decimal   text,
    -- The receipt's message_state (SMPP 3.4 5.2.28), error and its reason (as the connection's
    -- error map reads it), once one came.
    state        smallint,
    error        text,
    reason       text,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, part)
);
CREATE INDEX smpp_parts_text ON smpp_parts (connection, id_text);
CREATE INDEX smpp_parts_hex ON smpp_parts (connection, id_hex) WHERE id_hex IS NOT NULL;
CREATE INDEX smpp_parts_decimal ON smpp_parts (connection, id_decimal) WHERE id_decimal IS NOT NULL;

-- Receipts matching no part yet: one that overtook its submit_sm_resp waits here for the part
-- to be recorded (and is applied in that transaction); one for an id we never sent is logged
-- and dropped after a while.
CREATE TABLE smpp_receipts (
    seq         bigserial   PRIMARY KEY,
    connection  text        NOT NULL,
    id_text     text        NOT NULL,
    id_hex      text,
    id_decimal  text,
    state       smallint    NOT NULL,
    error       text,
    reason      text,
    contact     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX smpp_receipts_text ON smpp_receipts (connection, id_text);

-- Parts of a contact's long message, until the last one comes (or they are given up on).
CREATE TABLE smpp_mo_parts (
    connection  text        NOT NULL,
    contact     text        NOT NULL,
    ours        text        NOT NULL,
    reference   integer     NOT NULL,
    total       smallint    NOT NULL,
    seq         smallint    NOT NULL,
    text        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, contact, ours, reference, total, seq)
);

-- The binds an SMSC allows a system id, shared by the dispatcher replicas: a replica binds
-- only on a slot it leases (its fair share of them), renews the lease while bound, and unbinds
-- before it lapses. So the replicas together never hold more binds than configured.
CREATE TABLE smpp_bind_slots (
    connection  text        NOT NULL,
    slot        integer     NOT NULL,
    owner       text,
    lease_until timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (connection, slot)
);

-- Contacts' messages (and parts) lately taken: an SMSC sends a deliver_sm again when our answer
-- was lost (a bind cut, a dispatcher killed between the commit and the answer); the same one
-- again within a few minutes is answered and dropped, not delivered twice.
CREATE TABLE smpp_mo_seen (
    connection text        NOT NULL,
    key        text        NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, key)
);
