-- Incidents of the gateway's backends: opened when a backend's circuit
-- breaker opens, closed when it closes (crates/store/src/incidents.rs).
-- Uptime over a window is computed from them. Times are unix ms;
-- closed_at is NULL while the incident is open. Keep in step with
-- ../postgres.

CREATE TABLE incidents (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    backend    TEXT NOT NULL,
    model      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    opened_at  BIGINT NOT NULL,
    closed_at  BIGINT
);
CREATE INDEX incidents_backend_time ON incidents (backend, opened_at);
CREATE INDEX incidents_time ON incidents (opened_at);
