-- The chat app's conversations, stored server-side per person: each belongs
-- to one organisation AND one user (every read is scoped by both), and its
-- messages are ordered by `seq` (1, 2, …) within it. `settings` is a JSON
-- object (temperature, max_tokens, …) kept as text. Keep in step with
-- ../sqlite.

CREATE TABLE conversations (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title         TEXT NOT NULL,
    model         TEXT NOT NULL,
    system_prompt TEXT NOT NULL,
    settings      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX conversations_owner_updated ON conversations (org_id, user_id, updated_at);

CREATE TABLE conversation_messages (
    id                TEXT PRIMARY KEY,
    conversation_id   TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq               BIGINT NOT NULL,
    role              TEXT NOT NULL,
    content           TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    request_id        TEXT,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    UNIQUE (conversation_id, seq)
);
