-- Budgets, prices, plans, sessions, key kinds and limits, and reservation
-- progress. Money is an integer in the billing unit (picodollars); times are
-- unix milliseconds. Keep in step with ../sqlite.

-- Keys: `project` keys call the API for their project; `admin` keys also
-- manage their organisation (keys, usage, costs, budgets, audit log).
-- Requests/tokens per minute: NULL means the project's or the server's default.
ALTER TABLE api_keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'project'
    CHECK (kind IN ('project', 'admin'));
ALTER TABLE api_keys ADD COLUMN rpm_limit BIGINT;
ALTER TABLE api_keys ADD COLUMN tpm_limit BIGINT;
ALTER TABLE projects ADD COLUMN rpm_limit BIGINT;
ALTER TABLE projects ADD COLUMN tpm_limit BIGINT;

-- What an open reservation has generated so far, written as it goes, so that
-- recovery after a crash bills what was produced. `budget_scopes` names the
-- budget counters the amount is held in (`org,project,key`), `period` the
-- counters' period at reservation time.
ALTER TABLE reservations ADD COLUMN model TEXT;
ALTER TABLE reservations ADD COLUMN backend TEXT;
ALTER TABLE reservations ADD COLUMN prompt_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN completion_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN cost BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN budget_scopes TEXT NOT NULL DEFAULT '';
ALTER TABLE reservations ADD COLUMN period TEXT NOT NULL DEFAULT '';

-- A hard and/or soft limit on one scope (an organisation, a project or a
-- key). `monthly`: spend per calendar month (UTC); `prepaid`: a balance that
-- spend draws down for good (hard_limit is the credit bought so far).
CREATE TABLE budgets (
    scope      TEXT NOT NULL CHECK (scope IN ('org', 'project', 'key')),
    scope_id   TEXT NOT NULL,
    org_id     TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('monthly', 'prepaid')),
    hard_limit BIGINT,
    soft_limit BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (scope, scope_id)
);
CREATE INDEX budgets_org ON budgets (org_id);

-- Spend and open reservations of a budgeted scope in one period (`YYYY-MM`
-- for monthly budgets, `all` for prepaid ones). A reservation is admitted by
-- one conditional UPDATE (spent + reserved + amount <= limit), so concurrent
-- requests can never together pass the limit.
CREATE TABLE budget_counters (
    scope         TEXT NOT NULL,
    scope_id      TEXT NOT NULL,
    period        TEXT NOT NULL,
    spent         BIGINT NOT NULL DEFAULT 0,
    reserved      BIGINT NOT NULL DEFAULT 0,
    soft_notified BIGINT,
    PRIMARY KEY (scope, scope_id, period)
);

-- Per-model prices with the time they took effect; a request pays the price
-- in force when it started. Per token, in the billing unit.
CREATE TABLE prices (
    model        TEXT NOT NULL,
    effective_at BIGINT NOT NULL,
    input        BIGINT NOT NULL,
    cached_input BIGINT NOT NULL,
    output       BIGINT NOT NULL,
    PRIMARY KEY (model, effective_at)
);

-- Plans for people (the chat app): the definition as JSON (billing::Plan).
CREATE TABLE plans (
    id         TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE plan_assignments (
    org_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    plan_id     TEXT NOT NULL REFERENCES plans(id),
    assigned_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

-- Web app sessions: the cookie's token is stored only as a hash.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    org_id     TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE INDEX usage_user_time ON usage_ledger (user_id, created_at);
