-- Parlance store, initial schema (PostgreSQL). Times are unix milliseconds (BIGINT);
-- money is an integer in the billing unit. Keep in step with ../sqlite.

CREATE TABLE organizations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'reader')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE projects (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX projects_org ON projects (org_id);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    project_id     TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    redacted       TEXT NOT NULL,
    secret_hash    TEXT NOT NULL UNIQUE,
    allowed_models TEXT,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    expires_at     BIGINT,
    revoked_at     BIGINT
);
CREATE INDEX api_keys_org_project ON api_keys (org_id, project_id);

-- One immutable row per request. No foreign keys: history outlives the keys
-- and projects it names, and the insert stays cheap.
CREATE TABLE usage_ledger (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id        TEXT NOT NULL UNIQUE,
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
    created_at        BIGINT NOT NULL
);
CREATE INDEX usage_org_time ON usage_ledger (org_id, created_at);
CREATE INDEX usage_project_time ON usage_ledger (project_id, created_at);
CREATE INDEX usage_key_time ON usage_ledger (api_key_id, created_at);
CREATE INDEX usage_model_time ON usage_ledger (model, created_at);

CREATE FUNCTION parlance_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is %', TG_TABLE_NAME, TG_ARGV[0];
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER usage_ledger_immutable BEFORE UPDATE OR DELETE ON usage_ledger
    FOR EACH ROW EXECUTE FUNCTION parlance_refuse_change('immutable');

-- Durable budget reservations taken before generation; settled (deleted in the
-- same transaction as the ledger insert) or recovered after a crash.
CREATE TABLE reservations (
    request_id TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    project_id TEXT,
    api_key_id TEXT,
    user_id    TEXT,
    amount     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX reservations_org ON reservations (org_id);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX audit_org_time ON audit_log (org_id, created_at);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION parlance_refuse_change('append-only');
