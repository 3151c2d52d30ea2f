-- A number's own send rate (segments a second) and burst (segments); NULL: the carriers' usual
-- limit for its kind. The dispatchers learn them from the number's state event.
ALTER TABLE numbers ADD COLUMN send_rate double precision, ADD COLUMN send_burst integer;
