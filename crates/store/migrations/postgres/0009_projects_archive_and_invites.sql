-- The admin API's projects and invites. A project can be archived
-- (`archived_at` set): its keys authenticate no more and it takes no new
-- keys, but its rows and history stay. An invite is a one-time link into
-- an organisation with a role: the link's secret is stored only as its
-- SHA-256 (`token_hash`); accepting it (the web app's sign-up with the
-- link) sets `accepted_at` once, in the transaction that makes the
-- membership. Keep in step with ../sqlite.

ALTER TABLE projects ADD COLUMN archived_at BIGINT;

CREATE TABLE invites (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    invited_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by TEXT REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX invites_org ON invites (org_id, invited_at);
