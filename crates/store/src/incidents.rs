//! Incidents of the gateway's backends: one is opened when a backend's
//! circuit breaker opens and closed when it closes again; uptime over a
//! window is the share of it not covered by an incident. These are system
//! records (backends belong to the server, not to an organisation), so
//! nothing here takes an organisation id.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Result, Store};

/// One recorded incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Increasing with insertion.
    pub id: i64,
    /// The backend's id.
    pub backend: String,
    /// The gateway model it serves.
    pub model: String,
    /// Why it was opened (the breaker's reason).
    pub reason: String,
    /// Unix milliseconds.
    pub opened_at: i64,
    /// Unix milliseconds; `None` while open.
    pub closed_at: Option<i64>,
}

fn incident_from_row(row: &AnyRow) -> Result<Incident> {
    Ok(Incident {
        id: row.try_get("id")?,
        backend: row.try_get("backend")?,
        model: row.try_get("model")?,
        reason: row.try_get("reason")?,
        opened_at: row.try_get("opened_at")?,
        closed_at: row.try_get("closed_at")?,
    })
}

const COLUMNS: &str = "id, backend, model, reason, opened_at, closed_at";

impl Store {
    /// Opens an incident for `backend` at `at` (unix ms) unless one is
    /// already open for it; returns the open incident's id either way.
    ///
    /// The check and the insert are one statement: a transaction that read
    /// first and wrote after could not take SQLite's write lock once another
    /// writer (the usage ledger, busiest exactly when a backend fails) had
    /// committed in between, and the incident would be lost.
    pub async fn open_incident(
        &self,
        backend: &str,
        model: &str,
        reason: &str,
        at: i64,
    ) -> Result<i64> {
        sqlx::query(
            "INSERT INTO incidents (backend, model, reason, opened_at) \
             SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS BIGINT) \
             WHERE NOT EXISTS \
             (SELECT 1 FROM incidents WHERE backend = CAST($1 AS TEXT) AND closed_at IS NULL)",
        )
        .bind(backend)
        .bind(model)
        .bind(reason)
        .bind(at)
        .execute(self.pool())
        .await?;
        let id: i64 = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE backend = $1 AND closed_at IS NULL \
             ORDER BY id LIMIT 1",
        )
        .bind(backend)
        .fetch_one(self.pool())
        .await?;
        Ok(id)
    }

    /// Closes every open incident of `backend` at `at` (unix ms); returns
    /// how many were open.
    pub async fn close_incidents(&self, backend: &str, at: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE incidents SET closed_at = $1 WHERE backend = $2 AND closed_at IS NULL",
        )
        .bind(at)
        .bind(backend)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Incidents open now or opened at or after `since` (unix ms), newest
    /// first, at most `limit`.
    pub async fn list_incidents(&self, since: i64, limit: u32) -> Result<Vec<Incident>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM incidents WHERE closed_at IS NULL OR opened_at >= $1 \
             OR closed_at >= $1 ORDER BY opened_at DESC, id DESC LIMIT $2"
        ))
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Milliseconds of `[from, to)` that `backend` spent in incidents (an
    /// open incident lasts until `to`); overlapping incidents count once.
    pub async fn downtime_ms(&self, backend: &str, from: i64, to: i64) -> Result<i64> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM incidents WHERE backend = $1 AND opened_at < $2 \
             AND (closed_at IS NULL OR closed_at > $3) ORDER BY opened_at"
        ))
        .bind(backend)
        .bind(to)
        .bind(from)
        .fetch_all(self.pool())
        .await?;
        let mut spans = Vec::with_capacity(rows.len());
        for row in &rows {
            let incident = incident_from_row(row)?;
            let start = incident.opened_at.max(from);
            let end = incident.closed_at.unwrap_or(to).min(to);
            if end > start {
                spans.push((start, end));
            }
        }
        Ok(covered(spans))
    }
}

/// Total length of the union of `spans` (sorted by start).
fn covered(spans: Vec<(i64, i64)>) -> i64 {
    let mut total = 0i64;
    let mut current: Option<(i64, i64)> = None;
    for (start, end) in spans {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total = total.saturating_add(e - s);
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total = total.saturating_add(e - s);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    #[test]
    fn overlapping_spans_count_once() {
        assert_eq!(covered(vec![]), 0);
        assert_eq!(covered(vec![(0, 10), (5, 15), (20, 25)]), 20);
        assert_eq!(covered(vec![(0, 10), (2, 3)]), 10);
    }

    /// A breaker that opens while another writer (the ledger) holds SQLite's
    /// write lock and then commits still gets its incident, exactly once.
    #[tokio::test]
    async fn an_incident_opens_while_another_writer_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO incidents (backend, model, reason, opened_at) VALUES ('other', 'm', 'r', 1)",
        )
        .execute(&mut other)
        .await
        .unwrap();
        let opening = {
            let store = store.clone();
            tokio::spawn(async move { store.open_incident("flaky", "chat", "3 failures", 2).await })
        };
        tokio::task::yield_now().await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        let id = opening.await.unwrap().expect("the incident opens");
        let open: Vec<_> = store
            .list_incidents(0, 10)
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.backend == "flaky" && i.closed_at.is_none())
            .collect();
        assert_eq!(open.len(), 1, "the incident was recorded once");
        assert_eq!(open[0].id, id);
    }
}
