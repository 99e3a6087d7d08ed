-- Request ids are unique per organisation, not across the installation: the
-- ledger and the reservations key on (org_id, request_id). Keep in step with
-- ../sqlite.

ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_request_id_key;
ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_org_request UNIQUE (org_id, request_id);

ALTER TABLE reservations DROP CONSTRAINT reservations_pkey;
ALTER TABLE reservations ADD PRIMARY KEY (org_id, request_id);
-- The primary key now leads with org_id and serves per-organisation reads.
DROP INDEX reservations_org;
CREATE INDEX reservations_created ON reservations (created_at);
