-- Reservations are the rows of requests in flight: every metered request
-- inserts one before its call and deletes it when it settles. Each B-tree
-- the row lives in is one more page that the commit appends to the WAL
-- (and the checkpoint copies back): the table, its primary-key index and
-- the indexes on created_at and owner made four at each end, eight of the
-- ~20 pages a metered request wrote. The table only holds what is in
-- flight, so the lease sweep and the listing read it whole; keyed by its
-- primary key WITHOUT ROWID it is one B-tree, one page at each end. Keep
-- in step with ../postgres.

CREATE TABLE reservations_keyed (
    request_id        TEXT NOT NULL,
    org_id            TEXT NOT NULL,
    project_id        TEXT,
    api_key_id        TEXT,
    user_id           TEXT,
    amount            BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    model             TEXT,
    backend           TEXT,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    cached_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cost              BIGINT NOT NULL DEFAULT 0,
    budget_scopes     TEXT NOT NULL DEFAULT '',
    period            TEXT NOT NULL DEFAULT '',
    owner             TEXT,
    endpoint          TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (org_id, request_id)
) WITHOUT ROWID;

INSERT INTO reservations_keyed (request_id, org_id, project_id, api_key_id, user_id, amount,
    created_at, model, backend, prompt_tokens, cached_tokens, completion_tokens, cost,
    budget_scopes, period, owner, endpoint)
SELECT request_id, org_id, project_id, api_key_id, user_id, amount, created_at, model, backend,
    prompt_tokens, cached_tokens, completion_tokens, cost, budget_scopes, period, owner, endpoint
FROM reservations;

DROP TABLE reservations;
ALTER TABLE reservations_keyed RENAME TO reservations;
