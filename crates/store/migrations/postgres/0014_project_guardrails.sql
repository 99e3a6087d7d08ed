-- Project guardrails: whether a project's requests have their input
-- moderated (a flagged request is refused with content_policy_violation)
-- and their output (a flagged answer ends with finish_reason
-- content_filter). 0 is off, 1 is on. Keep in step with ../sqlite.

ALTER TABLE projects ADD COLUMN moderate_input BIGINT NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN moderate_output BIGINT NOT NULL DEFAULT 0;
