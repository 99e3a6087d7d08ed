-- Instances own their work. Each `parlance serve` process holds a lease,
-- renewed by a heartbeat; each reservation names the instance that made
-- it, and only reservations whose owner's lease has expired (or that have
-- no owner: made before leases existed) are recovered as `interrupted`. A
-- restarting instance no longer settles another instance's live requests.
CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);

ALTER TABLE reservations ADD COLUMN owner TEXT;
CREATE INDEX reservations_owner ON reservations (owner);
