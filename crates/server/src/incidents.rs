//! Background work of a running server: the gateway's active health checks
//! and the incident recorder, which reads the breakers' state changes
//! ([`gateway::Gateway::subscribe`]) and keeps the store's incidents: one
//! opened when a backend's breaker opens, closed when it closes.
//! [`Background`] holds the tasks and stops them when dropped. When the
//! gateway is replaced (a configuration reload), both restart on the new
//! one, and the old backends' open incidents are closed: the new gateway's
//! breakers start closed.

use std::time::{Duration, UNIX_EPOCH};

use gateway::{BreakerEvent, BreakerState, Gateway};
use store::{ErrorKind, Store};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// The server's background tasks; dropping it stops them.
#[must_use = "dropping it stops the health checks and the incident recorder"]
pub struct Background {
    supervisor: JoinHandle<()>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl AppState {
    /// Starts the gateway's health checks and, with a store, the incident
    /// recorder, on the current runtime; both follow gateway reloads.
    pub fn start_background(&self) -> Background {
        let store = self.meter().map(|meter| meter.store().clone());
        let mut routing = self.watch_routing();
        // Subscribed here, so that no change after this call is missed.
        let current = routing.borrow_and_update().clone();
        let first = store
            .as_ref()
            .map(|store| record_incidents(&current.gateway, store.clone()));
        let supervisor = tokio::spawn(async move {
            // Dropped (aborting every task) when the supervisor is aborted.
            let mut running = AbortAll(first.into_iter().collect());
            let mut current = current;
            loop {
                running.0.extend(current.gateway.spawn_health_checks());
                if routing.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                for task in running.0.drain(..) {
                    task.abort();
                }
                if let Some(store) = &store {
                    close_all(store, &current.gateway).await;
                }
                current = routing.borrow_and_update().clone();
                if let Some(store) = &store {
                    running
                        .0
                        .push(record_incidents(&current.gateway, store.clone()));
                }
            }
        });
        Background { supervisor }
    }
}

/// Aborts its tasks when dropped.
struct AbortAll(Vec<JoinHandle<()>>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Closes the open incidents of every backend of `gateway` (replaced).
async fn close_all(store: &Store, gateway: &Gateway) {
    let now = store::now_ms();
    for status in gateway.status() {
        if let Err(err) = store.close_incidents(&status.id, now).await {
            tracing::error!(backend = %status.id, error = %err, "cannot close the incident");
        }
    }
}

/// Records every breaker change of `gateway` in `store` until the gateway
/// is gone. Subscribes before returning, so no later change is missed.
pub fn record_incidents(gateway: &Gateway, store: Store) -> JoinHandle<()> {
    let mut events = gateway.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => record(&store, &event).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "incident recorder fell behind; events lost");
                }
                Err(RecvError::Closed) => break,
            }
        }
    })
}

/// Tries at writing one breaker change: a write can fail for a passing
/// reason (with SQLite, a transaction that read before the ledger's writer
/// committed cannot then take the write lock, and the ledger is busiest
/// exactly when a backend is failing), so it is tried again after a pause
/// that doubles each time (20 ms to 320 ms).
const RECORD_ATTEMPTS: u32 = 5;

async fn record(store: &Store, event: &BreakerEvent) {
    let at = event
        .at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    tracing::warn!(backend = %event.backend, model = %event.model, from = event.from.as_str(),
        to = event.to.as_str(), reason = %event.reason, "backend breaker changed");
    for attempt in 1..=RECORD_ATTEMPTS {
        let outcome = match event.to {
            BreakerState::Open => store
                .open_incident(&event.backend, &event.model, &event.reason, at)
                .await
                .map(drop),
            BreakerState::Closed => store.close_incidents(&event.backend, at).await.map(drop),
            BreakerState::HalfOpen => Ok(()),
        };
        match outcome {
            Ok(()) => return,
            Err(err) if err.kind() == ErrorKind::Unavailable && attempt < RECORD_ATTEMPTS => {
                tracing::warn!(backend = %event.backend, error = %err, attempt,
                    "incident not recorded yet; trying again");
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            Err(err) => {
                tracing::error!(backend = %event.backend, error = %err, "cannot record the incident");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;
    use std::time::SystemTime;

    /// A breaker that opens while the ledger is writing still opens an
    /// incident: the recorder's transaction reads, then finds that another
    /// writer committed meanwhile (SQLite refuses its write lock outright,
    /// whatever the busy timeout), and tries again.
    #[tokio::test]
    async fn an_incident_is_recorded_when_another_writer_commits_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        // Another writer holds the write lock (as the ledger's flush does).
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
        let event = BreakerEvent {
            backend: "flaky".into(),
            model: "chat".into(),
            from: BreakerState::Closed,
            to: BreakerState::Open,
            reason: "3 consecutive failures".into(),
            at: SystemTime::now(),
        };
        let recording = {
            let store = store.clone();
            tokio::spawn(async move { record(&store, &event).await })
        };
        // Give the recorder time to read and start waiting for the lock,
        // then commit: its snapshot is now stale. (The pause only decides
        // whether the race is staged; the incident must be there either way.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        recording.await.unwrap();
        let open: Vec<_> = store
            .list_incidents(0, 10)
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.backend == "flaky" && i.closed_at.is_none())
            .collect();
        assert_eq!(open.len(), 1, "the incident was recorded once");
    }
}
