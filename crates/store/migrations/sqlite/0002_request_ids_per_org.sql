-- Request ids are unique per organisation, not across the installation: the
-- ledger and the reservations key on (org_id, request_id). SQLite cannot drop
-- a column's UNIQUE or change a primary key in place, so both tables are
-- rebuilt, keeping every row (and the ledger's row ids), then their indexes
-- and the ledger's triggers are made again. Keep in step with ../postgres.

CREATE TABLE usage_ledger_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        TEXT NOT NULL,
    org_id            TEXT NOT NULL,
    project_id        TEXT,
    api_key_id        TEXT,
    user_id           TEXT,
    model             TEXT NOT NULL,
    backend           TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost              BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    status            TEXT NOT NULL,
    finish_reason     TEXT,
    created_at        BIGINT NOT NULL,
    UNIQUE (org_id, request_id)
);
INSERT INTO usage_ledger_new (id, request_id, org_id, project_id, api_key_id, user_id, model,
    backend, prompt_tokens, cached_tokens, completion_tokens, cost, latency_ms, status,
    finish_reason, created_at)
SELECT id, request_id, org_id, project_id, api_key_id, user_id, model, backend, prompt_tokens,
    cached_tokens, completion_tokens, cost, latency_ms, status, finish_reason, created_at
FROM usage_ledger;
-- Dropping a table fires no DELETE trigger; its indexes and triggers go with it.
DROP TABLE usage_ledger;
ALTER TABLE usage_ledger_new RENAME TO usage_ledger;
CREATE INDEX usage_org_time ON usage_ledger (org_id, created_at);
CREATE INDEX usage_project_time ON usage_ledger (project_id, created_at);
CREATE INDEX usage_key_time ON usage_ledger (api_key_id, created_at);
CREATE INDEX usage_model_time ON usage_ledger (model, created_at);

CREATE TRIGGER usage_ledger_no_update BEFORE UPDATE ON usage_ledger
BEGIN
    SELECT RAISE(ABORT, 'usage_ledger is immutable');
END;
CREATE TRIGGER usage_ledger_no_delete BEFORE DELETE ON usage_ledger
BEGIN
    SELECT RAISE(ABORT, 'usage_ledger is immutable');
END;

CREATE TABLE reservations_new (
    request_id TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    project_id TEXT,
    api_key_id TEXT,
    user_id    TEXT,
    amount     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, request_id)
);
INSERT INTO reservations_new (request_id, org_id, project_id, api_key_id, user_id, amount,
    created_at)
SELECT request_id, org_id, project_id, api_key_id, user_id, amount, created_at FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_new RENAME TO reservations;
CREATE INDEX reservations_created ON reservations (created_at);
