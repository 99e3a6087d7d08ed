-- Stored chat completions (POST /v1/chat/completions with store: true):
-- each belongs to one organisation AND one project (every read is scoped
-- by both). `completion` is the chat.completion object as answered (JSON
-- text); `messages` the request's messages, each with its id (a JSON
-- array, GET …/{id}/messages); `metadata` the object's metadata (a JSON
-- object), also kept as one row per pair in
-- stored_chat_completion_metadata so that a list can filter on it in SQL.
-- Pages are ordered by (created_at, id). Keep in step with ../postgres.

CREATE TABLE stored_chat_completions (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    project_id TEXT NOT NULL,
    model      TEXT NOT NULL,
    completion TEXT NOT NULL,
    messages   TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX stored_chat_completions_owner_created
    ON stored_chat_completions (org_id, project_id, created_at, id);

CREATE TABLE stored_chat_completion_metadata (
    completion_id TEXT NOT NULL
        REFERENCES stored_chat_completions(id) ON DELETE CASCADE ON UPDATE CASCADE,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (completion_id, key)
);
CREATE INDEX stored_chat_completion_metadata_pair
    ON stored_chat_completion_metadata (key, value);
