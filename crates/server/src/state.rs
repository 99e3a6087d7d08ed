//! [`AppState`]: the models served (name → running engine), the gateway
//! that routes every chat model to its backends, the server's limits, and
//! how requests are authenticated and metered, shared by every handler.
//!
//! Every locally served model without a `[gateway]` entry of its own gets
//! one gateway model with a single `local` backend ([`build_gateway`]), so
//! `/v1/models`, `/status` and routing see one list of models.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::ApiError;
use engine::EngineHandle;
use gateway::{BackendKind, ConfigError, Gateway, GatewayConfig, ModelConfig};

use tokio::sync::watch;

use crate::auth::Auth;
use crate::engine_backend::EngineBackend;
use crate::limits::{LimitDefaults, RateLimiting};
use crate::metering::Meter;

/// The default cap on a request body: 8 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 8 << 20;
/// The default time limit of a non-streamed request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// One model the server answers for.
#[derive(Clone)]
pub struct ServedModel {
    /// The id clients pass as `model`.
    pub name: String,
    /// The running engine.
    pub engine: EngineHandle,
    /// Unix seconds when the model was registered.
    pub created: u64,
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    models: Arc<BTreeMap<String, ServedModel>>,
    /// Registration order, so the first model is the default of the
    /// model-less llama.cpp routes.
    order: Arc<Vec<String>>,
    body_limit: usize,
    request_timeout: Duration,
    /// Generations the server holds right now (streams and requests in
    /// flight); one a client abandoned is dropped, so leaves this count.
    live_generations: Arc<AtomicUsize>,
    auth: Auth,
    /// The ledger writer; `None` when there is no store.
    meter: Option<Meter>,
    /// RPM/TPM limits per key and project; `None`: no limits.
    rate_limits: Option<Arc<RateLimiting>>,
    /// The gateway and which of its models take the direct engine path.
    routing: Arc<watch::Sender<Arc<Routing>>>,
    /// How long in-flight requests may run on after a shutdown signal.
    shutdown_grace: Duration,
    /// Cancelled when the shutdown grace is over: requests and streams
    /// still running are cut (see `serve_until`).
    cut: tokio_util::sync::CancellationToken,
}

/// The gateway and the models it serves from exactly one local engine.
pub struct Routing {
    /// Routes every chat model (local ones included) to its backends.
    pub gateway: Gateway,
    /// Gateway model → local engine name, for models served by exactly one
    /// `local` backend and no fallback: these take the direct engine path.
    pub direct: HashMap<String, String>,
    /// Every gateway model with its aliases, in configuration order (the
    /// implied local models last).
    pub catalog: Vec<(String, Vec<String>)>,
}

/// The default time in-flight requests get after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Builds the gateway for `config` plus one single-`local`-backend model
/// per engine in `engines` that the config does not name (as a model or an
/// alias). Every `local` backend must name a served engine (its `model`,
/// else the gateway model's name).
pub fn build_gateway(
    config: &GatewayConfig,
    engines: &BTreeMap<String, ServedModel>,
    order: &[String],
    live: &Arc<AtomicUsize>,
) -> Result<Routing, ConfigError> {
    let mut config = config.clone();
    for name in order {
        if config.resolve(name).is_none() {
            let backend = serde_json::from_value(serde_json::json!({
                "id": format!("{name}#local"),
                "kind": "local",
            }))
            .map_err(|err| ConfigError::Build {
                id: name.clone(),
                problem: err.to_string(),
            })?;
            config.models.push(ModelConfig {
                name: name.clone(),
                aliases: Vec::new(),
                fallbacks: Vec::new(),
                routing: gateway::RoutingStrategy::default(),
                backends: vec![backend],
            });
        }
    }
    config.validate()?;
    let mut builder = Gateway::builder(config.clone());
    let mut direct = HashMap::new();
    for model in &config.models {
        for (index, entry) in model.backends.iter().enumerate() {
            if entry.kind != BackendKind::Local {
                continue;
            }
            let id = gateway::config::backend_id(&model.name, index, entry);
            let engine_name = entry.upstream_model(&model.name);
            let Some(served) = engines.get(engine_name) else {
                return Err(ConfigError::Build {
                    id,
                    problem: format!("no local model `{engine_name}` is loaded"),
                });
            };
            if model.backends.len() == 1 && model.fallbacks.is_empty() {
                direct.insert(model.name.clone(), engine_name.to_owned());
            }
            let backend = EngineBackend::new(served.engine.clone(), live.clone());
            builder = builder.backend(id, Arc::new(backend));
        }
    }
    let catalog = config
        .models
        .iter()
        .map(|m| (m.name.clone(), m.aliases.clone()))
        .collect();
    Ok(Routing {
        gateway: builder.build()?,
        direct,
        catalog,
    })
}

impl AppState {
    /// A state serving `models` (name, engine), in that order. A name given
    /// twice keeps its first engine.
    pub fn new(models: impl IntoIterator<Item = (String, EngineHandle)>) -> Self {
        let created = crate::unix_now();
        let mut map = BTreeMap::new();
        let mut order = Vec::new();
        for (name, engine) in models {
            if map.contains_key(&name) {
                continue;
            }
            order.push(name.clone());
            map.insert(
                name.clone(),
                ServedModel {
                    name,
                    engine,
                    created,
                },
            );
        }
        let live = Arc::new(AtomicUsize::new(0));
        let routing =
            build_gateway(&GatewayConfig::default(), &map, &order, &live).unwrap_or_else(|err| {
                // Only the implied entries are there: one per distinct name.
                tracing::error!(error = %err, "cannot route the local models");
                Routing {
                    gateway: Gateway::builder(GatewayConfig::default())
                        .build()
                        .expect("an empty gateway configuration is valid"),
                    direct: HashMap::new(),
                    catalog: Vec::new(),
                }
            });
        AppState {
            models: Arc::new(map),
            order: Arc::new(order),
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            live_generations: live,
            auth: Auth::Off,
            meter: None,
            rate_limits: None,
            routing: Arc::new(watch::Sender::new(Arc::new(routing))),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            cut: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Routes chat models as `config` says (`[gateway]`), besides the
    /// local models it does not name; a configuration that cannot be used
    /// is refused with the entry at fault.
    pub fn with_gateway(mut self, config: &GatewayConfig) -> Result<Self, ConfigError> {
        let routing = build_gateway(config, &self.models, &self.order, &self.live_generations)?;
        self.routing = Arc::new(watch::Sender::new(Arc::new(routing)));
        Ok(self)
    }

    /// Replaces the gateway with one built from `config`, for every clone
    /// of this state; requests and streams already routed finish on the old
    /// one. An unusable configuration is refused and the old one kept.
    pub fn reload_gateway(&self, config: &GatewayConfig) -> Result<(), ConfigError> {
        let routing = build_gateway(config, &self.models, &self.order, &self.live_generations)?;
        self.routing.send_replace(Arc::new(routing));
        Ok(())
    }

    /// The routing now in force.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.borrow().clone()
    }

    /// The routing now in force, then each that replaces it.
    pub fn watch_routing(&self) -> watch::Receiver<Arc<Routing>> {
        self.routing.subscribe()
    }

    /// The gateway routing every chat model (cheap: shared state).
    pub fn gateway(&self) -> Gateway {
        self.routing.borrow().gateway.clone()
    }

    /// Every gateway model with its aliases.
    pub fn catalog(&self) -> Vec<(String, Vec<String>)> {
        self.routing.borrow().catalog.clone()
    }

    /// The local engine of `model` (a gateway model name) when it is served
    /// by exactly one local backend: such requests take the direct path.
    pub fn direct_engine(&self, model: &str) -> Option<ServedModel> {
        let routing = self.routing.borrow();
        routing
            .direct
            .get(model)
            .and_then(|name| self.models.get(name))
            .cloned()
    }

    /// Sets how long in-flight requests may run on after a shutdown signal.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long in-flight requests may run on after a shutdown signal.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// Cancelled when requests still in flight must stop (the shutdown
    /// grace is over).
    pub fn cut_token(&self) -> &tokio_util::sync::CancellationToken {
        &self.cut
    }

    /// Limits every authenticated request's key and project (see
    /// [`crate::limits`]), with buckets in `limiter` (in-process or Redis).
    pub fn with_rate_limits(
        mut self,
        limiter: ratelimit::Limiter,
        defaults: LimitDefaults,
    ) -> Self {
        self.rate_limits = Some(Arc::new(RateLimiting::new(limiter, defaults)));
        self
    }

    /// The rate limits, when configured.
    pub(crate) fn rate_limits(&self) -> Option<&Arc<RateLimiting>> {
        self.rate_limits.as_ref()
    }

    /// Sets how requests are authenticated; with a store (open or keyed),
    /// every generation is metered in its ledger at the reference prices.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.meter = match &auth {
            Auth::Off => None,
            Auth::Open { store, .. } | Auth::Keys { store, .. } => {
                Some(Meter::new(store.clone(), billing::PriceTable::reference()))
            }
        };
        self.auth = auth;
        self
    }

    /// Posts budget soft-limit notices to `url` besides logging them (see
    /// `notify`); call after [`AppState::with_auth`].
    pub fn with_budget_webhook(mut self, url: Option<String>) -> Self {
        self.meter = self.meter.map(|meter| meter.with_webhook(url));
        self
    }

    /// How requests are authenticated.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The ledger writer, when there is a store.
    pub fn meter(&self) -> Option<&Meter> {
        self.meter.as_ref()
    }

    /// Sets the largest request body accepted (413 above it).
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets the time limit of a non-streamed request (504 past it).
    pub fn with_request_timeout(mut self, limit: Duration) -> Self {
        self.request_timeout = limit;
        self
    }

    /// The largest request body accepted.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// The time limit of a non-streamed request.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// How many generations the server holds right now. A client that
    /// leaves mid-stream drops its generations (cancelling them in the
    /// engine), so this falls back as soon as it is gone.
    pub fn live_generations(&self) -> usize {
        self.live_generations.load(Ordering::Relaxed)
    }

    pub(crate) fn live_generations_counter(&self) -> &Arc<AtomicUsize> {
        &self.live_generations
    }

    /// The served models, in registration order.
    pub fn models(&self) -> impl Iterator<Item = &ServedModel> {
        self.order.iter().filter_map(|name| self.models.get(name))
    }

    /// The model called `name`, or a 404 `model_not_found`.
    pub fn model(&self, name: &str) -> Result<&ServedModel, ApiError> {
        self.models
            .get(name)
            .ok_or_else(|| ApiError::ModelNotFound {
                model: name.to_owned(),
            })
    }

    /// The model a model-less request uses: `name` when given, else the
    /// first registered one.
    pub fn model_or_default(&self, name: Option<&str>) -> Result<&ServedModel, ApiError> {
        match name {
            Some(name) => self.model(name),
            None => self.models().next().ok_or_else(|| ApiError::NotFound {
                message: "No model is loaded on this server.".into(),
            }),
        }
    }
}
