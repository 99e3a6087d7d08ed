-- Stored responses of the Responses API (POST /v1/responses with store
-- true, the default): each belongs to one organisation AND one project
-- (every read is scoped by both). `response` is the response object as
-- last written (JSON text); `input_items` are this turn's input items with
-- their ids (GET …/input_items); `context` is the whole conversation the
-- turn was generated from (the previous response's context and output,
-- then this input), which a turn naming it as `previous_response_id`
-- continues. A background response is written first as `queued` and
-- updated as it runs; `cancel_requested` asks its runner to stop. Keep in
-- step with ../sqlite.

CREATE TABLE responses (
    id                   TEXT PRIMARY KEY,
    org_id               TEXT NOT NULL,
    project_id           TEXT NOT NULL,
    previous_response_id TEXT,
    status               TEXT NOT NULL,
    response             TEXT NOT NULL,
    input_items          TEXT NOT NULL,
    context              TEXT NOT NULL,
    cancel_requested     BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX responses_owner_created ON responses (org_id, project_id, created_at);
