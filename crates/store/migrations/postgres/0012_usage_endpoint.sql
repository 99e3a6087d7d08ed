-- The endpoint of each ledger row (`/v1/chat/completions`, `/v1/responses`,
-- `/v1/messages`, `/v1/completions`, `/v1/embeddings`, …), so that the usage
-- API and the web app can tell the endpoints apart; the usage rollups gain
-- it as a dimension (part of their primary key). Rows written before this
-- migration have '' (unknown), read back as absent. Keep in step with
-- ../sqlite.

ALTER TABLE usage_ledger ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';

ALTER TABLE usage_rollup ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_rollup DROP CONSTRAINT usage_rollup_pkey;
ALTER TABLE usage_rollup
    ADD PRIMARY KEY (org_id, width_ms, start_ms, project_id, api_key_id, model, user_id, endpoint);
