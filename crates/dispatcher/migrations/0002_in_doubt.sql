-- What resolving a send in doubt needs. A carrier call whose outcome is unknown (it timed out
-- after the request left, or the dispatcher died during it) stays `sending`; once `check_at`
-- passes, the carrier is asked whether it has the message (list by From/To since the first
-- call): found, the sid is bound; provably absent, the stored message is sent.
ALTER TABLE sends
    -- The OutboundMessage as it came over the bus (protobuf): what is sent if the carrier
    -- never got it (the event itself was acknowledged long ago).
    ADD COLUMN message        bytea,
    -- When a `sending` row is next looked at: the end of the current call's lease, or of the
    -- back-off after a lookup that failed.
    ADD COLUMN check_at       timestamptz,
    -- Lookups made while resolving.
    ADD COLUMN checks         integer NOT NULL DEFAULT 0,
    -- When the first carrier call began: the carrier cannot have the message from before.
    ADD COLUMN first_call_at  timestamptz,
    -- After this the message is not handed to the carrier any more: it fails as `expired`.
    ADD COLUMN valid_until    timestamptz,
    -- The reason of a failed send (the error catalogue's name), to report it again.
    ADD COLUMN reason         text;

UPDATE sends SET check_at = updated_at, first_call_at = created_at WHERE state = 'sending';

CREATE INDEX sends_in_doubt ON sends (check_at) WHERE state = 'sending';
-- Which of the carrier's messages are already bound to one of ours.
CREATE INDEX sends_carrier_sid ON sends (carrier_sid) WHERE carrier_sid IS NOT NULL;
