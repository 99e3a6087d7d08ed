-- Crash recovery keeps what it needs. A reservation records the endpoint
-- its request came through, so that a row settled as `interrupted` by the
-- lease sweep (after the owning instance died) carries it like any other
-- ledger row. A stored response records the instance running it in the
-- background (`owner`, NULL when none runs it), so that the same sweep can
-- mark a queued or in-progress background response whose instance died as
-- failed instead of leaving it pending forever. Keep in step with
-- ../postgres.

ALTER TABLE reservations ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
ALTER TABLE responses ADD COLUMN owner TEXT;
CREATE INDEX responses_owner ON responses (owner);
