-- The front door. Sign-ups waiting for an owner's or admin's approval (a
-- person with a row here has an account but no membership, so no session,
-- until approved), and sign-in throttling: one row per throttled key (an
-- account's email or a client address) with its failures, lock-outs and
-- lock, shared by every instance on this database. The rules live in the
-- service crate; a row whose `expires_at` has passed means nothing and is
-- deleted. Keep in step with ../sqlite.

CREATE TABLE signup_requests (
    org_id     TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX signup_requests_user ON signup_requests (user_id);

CREATE TABLE login_throttles (
    throttle_key    TEXT PRIMARY KEY,
    failures        BIGINT NOT NULL,
    lockouts        BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    locked_until    BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL
);
CREATE INDEX login_throttles_expiry ON login_throttles (expires_at);
