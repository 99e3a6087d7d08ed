-- The endpoint of each ledger row (`/v1/chat/completions`, `/v1/responses`,
-- `/v1/messages`, `/v1/completions`, `/v1/embeddings`, …), so that the usage
-- API and the web app can tell the endpoints apart; the usage rollups gain
-- it as a dimension (part of their primary key). Rows written before this
-- migration have '' (unknown), read back as absent. Keep in step with
-- ../postgres.

ALTER TABLE usage_ledger ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';

CREATE TABLE usage_rollup_with_endpoint (
    org_id        TEXT NOT NULL,
    width_ms      BIGINT NOT NULL,
    start_ms      BIGINT NOT NULL,
    project_id    TEXT NOT NULL,
    api_key_id    TEXT NOT NULL,
    model         TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    input_tokens  BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    requests      BIGINT NOT NULL,
    cost          BIGINT NOT NULL,
    PRIMARY KEY (org_id, width_ms, start_ms, project_id, api_key_id, model, user_id, endpoint)
) WITHOUT ROWID;

INSERT INTO usage_rollup_with_endpoint (org_id, width_ms, start_ms, project_id, api_key_id,
    model, user_id, endpoint, input_tokens, cached_tokens, output_tokens, requests, cost)
SELECT org_id, width_ms, start_ms, project_id, api_key_id, model, user_id, '',
    input_tokens, cached_tokens, output_tokens, requests, cost
FROM usage_rollup;

DROP TABLE usage_rollup;
ALTER TABLE usage_rollup_with_endpoint RENAME TO usage_rollup;
