-- Reservations are the rows of requests in flight: every metered request
-- inserts one before its call and deletes it when it settles, and each
-- index is one more entry written and removed (and logged) per request.
-- The table only holds what is in flight, so the lease sweep and the
-- listing read it whole: its primary key (org_id, request_id) is the only
-- index it keeps. Keep in step with ../sqlite (where the table became one
-- B-tree, WITHOUT ROWID).

DROP INDEX IF EXISTS reservations_created;
DROP INDEX IF EXISTS reservations_owner;
