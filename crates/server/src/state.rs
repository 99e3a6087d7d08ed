//! [`AppState`]: the models served (name → running engine), the server's
//! limits, and how requests are authenticated and metered, shared by every
//! handler.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::ApiError;
use engine::EngineHandle;

use crate::auth::Auth;
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
        AppState {
            models: Arc::new(map),
            order: Arc::new(order),
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            live_generations: Arc::new(AtomicUsize::new(0)),
            auth: Auth::Off,
            meter: None,
            rate_limits: None,
        }
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
