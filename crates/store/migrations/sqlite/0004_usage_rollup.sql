-- Usage rollups: the ledger summed per organisation, time bucket and
-- (project, key, model, user), kept in the same transaction as each ledger
-- insert (crates/store/src/rollup.rs) so usage queries read a few rows per
-- bucket instead of every request. Two widths are kept: minutes (width_ms =
-- 60000) and hours (width_ms = 3600000); start_ms is the bucket's start in
-- unix ms, aligned down to its width. A missing dimension is stored as ''
-- (primary key columns must be NOT NULL in PostgreSQL) and read back as NULL.
-- Keep in step with ../postgres.

CREATE TABLE usage_rollup (
    org_id        TEXT NOT NULL,
    width_ms      BIGINT NOT NULL,
    start_ms      BIGINT NOT NULL,
    project_id    TEXT NOT NULL,
    api_key_id    TEXT NOT NULL,
    model         TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    input_tokens  BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    requests      BIGINT NOT NULL,
    cost          BIGINT NOT NULL,
    PRIMARY KEY (org_id, width_ms, start_ms, project_id, api_key_id, model, user_id)
) WITHOUT ROWID;

-- Backfill from the rows already in the ledger (floor alignment, also for
-- negative times: SQL's % truncates towards zero).
INSERT INTO usage_rollup (org_id, width_ms, start_ms, project_id, api_key_id, model, user_id,
    input_tokens, cached_tokens, output_tokens, requests, cost)
SELECT org_id, 60000, created_at - ((created_at % 60000) + 60000) % 60000,
    COALESCE(project_id, ''), COALESCE(api_key_id, ''), model, COALESCE(user_id, ''),
    SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens), COUNT(*), SUM(cost)
FROM usage_ledger
GROUP BY 1, 2, 3, 4, 5, 6, 7;

INSERT INTO usage_rollup (org_id, width_ms, start_ms, project_id, api_key_id, model, user_id,
    input_tokens, cached_tokens, output_tokens, requests, cost)
SELECT org_id, 3600000, created_at - ((created_at % 3600000) + 3600000) % 3600000,
    COALESCE(project_id, ''), COALESCE(api_key_id, ''), model, COALESCE(user_id, ''),
    SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens), COUNT(*), SUM(cost)
FROM usage_ledger
GROUP BY 1, 2, 3, 4, 5, 6, 7;
