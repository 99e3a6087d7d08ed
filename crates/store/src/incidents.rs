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
            if let Some(span) = clip(&incident, from, to) {
                spans.push(span);
            }
        }
        Ok(covered(spans))
    }

    /// Downtime of `backend` per day: entry `i` is the milliseconds of day
    /// `[from + i·24 h, from + (i+1)·24 h)` cut at `until` that it spent in
    /// incidents, exactly what [`Store::downtime_ms`] gives for that day
    /// (ending at `until` if that is sooner); a day that starts at or after
    /// `until` is 0. An open incident lasts until `until`. `days` entries,
    /// oldest first, from one query. Pass a UTC midnight as `from` for
    /// calendar days, and now as `until`.
    pub async fn daily_downtime_ms(
        &self,
        backend: &str,
        from: i64,
        days: u32,
        until: i64,
    ) -> Result<Vec<i64>> {
        self.daily_joint_downtime_ms(&[backend], from, days, until)
            .await
    }

    /// Like [`Store::daily_downtime_ms`], but each day's milliseconds during
    /// which every one of `backends` was in an incident at once: the
    /// downtime of a model that all of them serve. One query for all of
    /// them; no backends, no downtime.
    pub async fn daily_joint_downtime_ms(
        &self,
        backends: &[&str],
        from: i64,
        days: u32,
        until: i64,
    ) -> Result<Vec<i64>> {
        let end = from
            .saturating_add(i64::from(days).saturating_mul(DAY_MS))
            .min(until);
        if backends.is_empty() || end <= from {
            return Ok(vec![0; days as usize]);
        }
        let placeholders: Vec<String> = (1..=backends.len()).map(|n| format!("${n}")).collect();
        let n = backends.len();
        let sql = format!(
            "SELECT backend, opened_at, closed_at FROM incidents WHERE backend IN ({}) \
             AND opened_at < ${} AND (closed_at IS NULL OR closed_at > ${}) ORDER BY opened_at",
            placeholders.join(", "),
            n + 1,
            n + 2,
        );
        let mut query = sqlx::query_as::<_, (String, i64, Option<i64>)>(&sql);
        for backend in backends {
            query = query.bind(*backend);
        }
        let rows = query.bind(end).bind(from).fetch_all(self.pool()).await?;
        // Each backend's time in incidents, then the part all share.
        let mut joint: Option<Vec<(i64, i64)>> = None;
        for backend in backends {
            let spans: Vec<(i64, i64)> = rows
                .iter()
                .filter(|(b, _, _)| b == backend)
                .filter_map(|&(_, opened, closed)| {
                    let (start, stop) = (opened.max(from), closed.unwrap_or(until).min(end));
                    (stop > start).then_some((start, stop))
                })
                .collect();
            let spans = merged(spans);
            joint = Some(match joint {
                None => spans,
                Some(so_far) => intersection(&so_far, &spans),
            });
        }
        Ok(per_day(&joint.unwrap_or_default(), from, days, until))
    }
}

/// A day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// The part of `[from, to)` `incident` covers (an open one lasts until
/// `to`), if any.
fn clip(incident: &Incident, from: i64, to: i64) -> Option<(i64, i64)> {
    let start = incident.opened_at.max(from);
    let end = incident.closed_at.unwrap_or(to).min(to);
    (end > start).then_some((start, end))
}

/// The union of `spans` as disjoint spans, sorted.
fn merged(mut spans: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The intersection of two sorted lists of disjoint spans.
fn intersection(a: &[(i64, i64)], b: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let start = a[i].0.max(b[j].0);
        let end = a[i].1.min(b[j].1);
        if end > start {
            out.push((start, end));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// How much of each day `[from + i·24 h, from + (i+1)·24 h)` (cut at
/// `until`) the sorted disjoint `spans` cover.
fn per_day(spans: &[(i64, i64)], from: i64, days: u32, until: i64) -> Vec<i64> {
    (0..i64::from(days))
        .map(|i| {
            let start = from.saturating_add(i * DAY_MS);
            let end = start.saturating_add(DAY_MS).min(until);
            spans
                .iter()
                .map(|&(s, e)| (e.min(end) - s.max(start)).max(0))
                .sum()
        })
        .collect()
}

/// Total length of the union of `spans`.
fn covered(spans: Vec<(i64, i64)>) -> i64 {
    merged(spans)
        .into_iter()
        .fold(0i64, |total, (s, e)| total.saturating_add(e - s))
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
        assert_eq!(covered(vec![(20, 25), (0, 10), (10, 12)]), 17);
    }

    #[test]
    fn spans_intersect_and_split_by_day() {
        let a = merged(vec![(0, 10), (20, 30)]);
        let b = merged(vec![(5, 25), (28, 40)]);
        assert_eq!(intersection(&a, &b), [(5, 10), (20, 25), (28, 30)]);
        assert_eq!(intersection(&a, &[]), []);
        // Across midnight; the last day is cut at `until`, later days are 0.
        let spans = [
            (DAY_MS - 60_000, DAY_MS + 120_000),
            (2 * DAY_MS, 3 * DAY_MS),
        ];
        assert_eq!(
            per_day(&spans, 0, 4, 2 * DAY_MS + 1_000),
            [60_000, 120_000, 1_000, 0]
        );
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
