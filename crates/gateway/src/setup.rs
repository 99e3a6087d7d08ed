//! Building a [`Gateway`] from a [`GatewayConfig`]: one backend per
//! configured entry (`openai` and `anthropic` built here; `local` ones, and
//! any other override, supplied by the caller through
//! [`GatewayBuilder::backend`]), and the active health checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::anthropic::AnthropicBackend;
use crate::backend::Backend;
use crate::config::{backend_id, BackendConfig, BackendKind, ConfigError, GatewayConfig};
use crate::openai::{HttpTimeouts, OpenAiBackend};
use crate::pool::{BackendSlot, SlotSpec};
use crate::router::{Gateway, Inner, ModelRoutes};

/// How many breaker events a slow subscriber may fall behind by.
const EVENT_BUFFER: usize = 1024;

/// Builds a [`Gateway`].
pub struct GatewayBuilder {
    config: GatewayConfig,
    overrides: HashMap<String, Arc<dyn Backend>>,
}

impl Gateway {
    /// A builder for `config`.
    pub fn builder(config: GatewayConfig) -> GatewayBuilder {
        GatewayBuilder {
            config,
            overrides: HashMap::new(),
        }
    }
}

impl GatewayBuilder {
    /// Uses `backend` for the configured backend with id `id` (required for
    /// every `local` backend; optional for the others).
    pub fn backend(mut self, id: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        self.overrides.insert(id.into(), backend);
        self
    }

    /// Validates the configuration and builds every backend.
    pub fn build(mut self) -> Result<Gateway, ConfigError> {
        self.config.validate()?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mut models = HashMap::new();
        for model in &self.config.models {
            let mut slots = Vec::with_capacity(model.backends.len());
            for (index, entry) in model.backends.iter().enumerate() {
                let id = backend_id(&model.name, index, entry);
                let backend = match self.overrides.remove(&id) {
                    Some(backend) => backend,
                    None => build_backend(&id, entry)?,
                };
                let spec = SlotSpec {
                    id,
                    model: model.name.clone(),
                    upstream_model: entry.upstream_model(&model.name).to_owned(),
                    weight: entry.weight,
                    priority: entry.priority,
                    timeouts: entry.timeouts,
                };
                slots.push(Arc::new(BackendSlot::new(
                    spec,
                    backend,
                    self.config.breaker,
                    events.clone(),
                )));
            }
            models.insert(
                model.name.clone(),
                ModelRoutes {
                    name: model.name.clone(),
                    fallbacks: model.fallbacks.clone(),
                    routing: model.routing,
                    slots,
                },
            );
        }
        if let Some(id) = self.overrides.keys().next() {
            return Err(ConfigError::Build {
                id: id.clone(),
                problem: "no configured backend has this id".into(),
            });
        }
        let aliases = self.config.aliases();
        Ok(Gateway {
            inner: Arc::new(Inner {
                config: self.config,
                models,
                aliases,
                events,
                sticky: Mutex::new(HashMap::new()),
            }),
        })
    }
}

fn build_backend(id: &str, entry: &BackendConfig) -> Result<Arc<dyn Backend>, ConfigError> {
    let problem = |problem: String| ConfigError::Build {
        id: id.to_owned(),
        problem,
    };
    let key = entry.resolve_api_key()?;
    let t = entry.timeouts;
    let timeouts = HttpTimeouts {
        connect: Duration::from_millis(t.connect_ms),
        headers: Duration::from_millis(t.headers_ms),
        request: Duration::from_millis(t.request_ms),
    };
    let base_url = entry.base_url.clone().unwrap_or_default();
    Ok(match entry.kind {
        BackendKind::Local => {
            return Err(problem(
                "a local backend needs the engine, which the server supplies".into(),
            ))
        }
        BackendKind::Openai => Arc::new(
            OpenAiBackend::new(base_url, key, entry.health_path.clone(), timeouts)
                .map_err(problem)?,
        ),
        BackendKind::Anthropic => Arc::new(
            AnthropicBackend::new(
                base_url,
                key,
                entry.default_max_tokens,
                entry.health_path.clone(),
                timeouts,
            )
            .map_err(problem)?,
        ),
    })
}

impl Gateway {
    /// Starts the active health checks (one task per backend, every
    /// `health.interval_ms`) on the current Tokio runtime; `None` when
    /// disabled. Abort the handle to stop them.
    pub fn spawn_health_checks(&self) -> Option<JoinHandle<()>> {
        let health = self.inner.config.health;
        if !health.enabled {
            return None;
        }
        let interval = Duration::from_millis(health.interval_ms);
        let slots: Vec<Arc<BackendSlot>> = self.slots().cloned().collect();
        Some(tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for slot in slots {
                tasks.spawn(probe_forever(slot, interval));
            }
            while tasks.join_next().await.is_some() {}
        }))
    }

    /// Probes every backend once now (what each periodic round does).
    pub async fn check_health_now(&self) {
        let slots: Vec<Arc<BackendSlot>> = self.slots().cloned().collect();
        futures_util::future::join_all(slots.iter().map(|slot| probe_once(slot))).await;
    }
}

async fn probe_forever(slot: Arc<BackendSlot>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        probe_once(&slot).await;
    }
}

async fn probe_once(slot: &BackendSlot) {
    let limit = Duration::from_millis(slot.timeouts.headers_ms);
    let outcome = match tokio::time::timeout(limit, slot.backend.health()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => {
            tracing::debug!(backend = %slot.id, detail = %err.detail, "health check failed");
            Err(err.kind)
        }
        Err(_) => Err(crate::error::FailureKind::HeadersTimeout),
    };
    slot.on_health(outcome);
}
