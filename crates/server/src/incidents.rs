//! Background work of a running server: the instance lease's heartbeat and
//! its sweep of expired instances' requests (`service::instances`), the
//! gateway's active health checks and the incident recorder, which reads
//! the breakers' state changes
//! ([`gateway::Gateway::subscribe`]) and keeps the store's incidents: one
//! opened when a backend's breaker opens, closed when it closes.
//! [`Background`] holds the tasks and stops them when dropped. When the
//! gateway is replaced (a configuration reload), both restart on the new
//! one, and the old backends' open incidents are closed: the new gateway's
//! breakers start closed.

use std::time::UNIX_EPOCH;

use gateway::{BreakerEvent, BreakerState, Gateway};
use store::Store;
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
        let upkeep = self.lease().map(|lease| lease.spawn_upkeep());
        let supervisor = tokio::spawn(async move {
            // Dropped (aborting every task) when the supervisor is aborted.
            let mut running = AbortAll(first.into_iter().collect());
            let _upkeep = AbortAll(upkeep.into_iter().collect());
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

async fn record(store: &Store, event: &BreakerEvent) {
    let at = event
        .at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    tracing::warn!(backend = %event.backend, model = %event.model, from = event.from.as_str(),
        to = event.to.as_str(), reason = %event.reason, "backend breaker changed");
    let outcome = match event.to {
        BreakerState::Open => store
            .open_incident(&event.backend, &event.model, &event.reason, at)
            .await
            .map(drop),
        BreakerState::Closed => store.close_incidents(&event.backend, at).await.map(drop),
        BreakerState::HalfOpen => Ok(()),
    };
    if let Err(err) = outcome {
        tracing::error!(backend = %event.backend, error = %err, "cannot record the incident");
    }
}
