-- Whether the last carrier call of a send provably sent nothing (it failed before the carrier
-- had it: refused, unreachable, throttled). A send put in doubt from `retry` (its retry never
-- came back) is then sent again even on a carrier that cannot be asked (SMPP's at-most-once
-- policy fails only what may have reached the carrier).
ALTER TABLE sends ADD COLUMN unsent boolean NOT NULL DEFAULT false;
