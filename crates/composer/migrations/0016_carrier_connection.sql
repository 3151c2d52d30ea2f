-- Which carrier connection a number's messages go through (a Twilio account or a named SMPP
-- connection of the dispatchers); NULL: the dispatchers' default.
ALTER TABLE numbers ADD COLUMN carrier_connection text;
