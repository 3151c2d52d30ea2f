-- The carrier account an outbound message was sent through, as the dispatcher reports it: a
-- carrier's status callback applies only to a message of the account that signs it.
ALTER TABLE messages ADD COLUMN carrier_account text;
