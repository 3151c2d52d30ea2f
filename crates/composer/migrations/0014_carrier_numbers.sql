-- Numbers rented from the carrier or imported from it: how each came to us, the carrier's id,
-- and whether a released one still waits to be given back to the carrier.
ALTER TABLE numbers
    ADD COLUMN source text NOT NULL DEFAULT 'recorded'
        CHECK (source IN ('recorded', 'rented', 'imported')),
    ADD COLUMN carrier_sid text,
    ADD COLUMN carrier_release_pending boolean NOT NULL DEFAULT false;

CREATE INDEX numbers_carrier_release ON numbers (released_at) WHERE carrier_release_pending;

-- A rent or import under way: one organization at a time per number. A row left by a call
-- that did not finish (the carrier did not answer, the process died) lets the same
-- organization resume; another may take it over once it is stale.
CREATE TABLE number_rentals (
    number text PRIMARY KEY,
    organization_id text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
