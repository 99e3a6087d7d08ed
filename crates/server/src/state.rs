//! [`AppState`]: what every handler shares — the [`Service`] (the models,
//! their routing, the meter and the rate limits), how requests are
//! authenticated, the web app's accounts (sign-up policy, sign-in
//! throttling) and whose `X-Forwarded-For` to believe, and the HTTP-only
//! settings (body limit, request timeout, shutdown grace and the cut at its
//! end).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::EngineHandle;
use gateway::{ConfigError, Gateway, GatewayConfig};
use service::instances::Lease;
use service::{LimitDefaults, Meter, RateLimiting, Routing, ServedModel, Service};
use tokio::sync::watch;

use crate::auth::{store_of, Auth};
use crate::client::{TrustedProxies, TRUSTED_PROXIES_ENV};
use service::accounts::{Accounts, Signup};

/// The environment variable choosing who may sign up to the web app.
pub const SIGNUP_ENV: &str = "PARLANCE_SIGNUP";

/// The default cap on a request body: 8 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 8 << 20;
/// The default time limit of a non-streamed request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// The default time in-flight requests get after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    service: Service,
    body_limit: usize,
    request_timeout: Duration,
    auth: Auth,
    /// Sign-up policy, sign-in throttling and its clock.
    accounts: Accounts,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    trusted_proxies: Arc<TrustedProxies>,
    /// How long in-flight requests may run on after a shutdown signal.
    shutdown_grace: Duration,
    /// Cancelled when the shutdown grace is over: requests and streams
    /// still running are cut (see `serve_until`).
    cut: tokio_util::sync::CancellationToken,
    /// This instance's lease, which owns its reservations.
    lease: Option<Arc<Lease>>,
    /// Set once a shutdown signal arrived: new requests are refused (503)
    /// while those in flight finish; `/health` says so.
    draining: Arc<AtomicBool>,
    /// Requests being answered right now (a stream until its body ends).
    in_flight: Arc<AtomicUsize>,
}

impl AppState {
    /// A state serving `models` (name, engine), in that order. A name given
    /// twice keeps its first engine.
    pub fn new(models: impl IntoIterator<Item = (String, EngineHandle)>) -> Self {
        AppState {
            service: Service::new(models),
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            auth: Auth::Off,
            accounts: Accounts::default(),
            trusted_proxies: Arc::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            cut: tokio_util::sync::CancellationToken::new(),
            lease: None,
            draining: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Starts draining: from now on new requests are refused with 503 and
    /// `retry-after`, and `/health` answers `draining`, so a load balancer
    /// sends them elsewhere while the requests in flight finish.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server is draining (see [`AppState::start_draining`]).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Requests being answered right now (a stream counts until its body
    /// ends).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts one request in flight until the guard is dropped.
    pub(crate) fn track_request(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// Holds `lease` for this instance: every reservation names it as its
    /// owner, the server renews it and sweeps for expired instances'
    /// requests while it runs, and ends it after the last settlement (see
    /// `service::instances`). Call after [`AppState::with_auth`].
    pub fn with_lease(mut self, lease: Lease) -> Self {
        let meter = self
            .service
            .meter()
            .cloned()
            .map(|m| m.with_owner(lease.id()));
        self.service = self.service.with_meter(meter);
        self.lease = Some(Arc::new(lease));
        self
    }

    /// This instance's lease, when it holds one.
    pub fn lease(&self) -> Option<&Arc<Lease>> {
        self.lease.as_ref()
    }

    /// The request path: models, routing, meter and limits.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Routes chat models as `config` says (`[gateway]`), besides the
    /// local models it does not name; a configuration that cannot be used
    /// is refused with the entry at fault.
    pub fn with_gateway(mut self, config: &GatewayConfig) -> Result<Self, ConfigError> {
        self.service = self.service.with_gateway(config)?;
        Ok(self)
    }

    /// Replaces the gateway with one built from `config`, for every clone
    /// of this state; requests and streams already routed finish on the old
    /// one. An unusable configuration is refused and the old one kept.
    pub fn reload_gateway(&self, config: &GatewayConfig) -> Result<(), ConfigError> {
        self.service.reload_gateway(config)
    }

    /// The routing now in force.
    pub fn routing(&self) -> Arc<Routing> {
        self.service.routing()
    }

    /// The routing now in force, then each that replaces it.
    pub fn watch_routing(&self) -> watch::Receiver<Arc<Routing>> {
        self.service.watch_routing()
    }

    /// The gateway routing every chat model (cheap: shared state).
    pub fn gateway(&self) -> Gateway {
        self.service.routing().gateway.clone()
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
    /// `service::limits`), with buckets in `limiter` (in-process or Redis).
    pub fn with_rate_limits(
        mut self,
        limiter: ratelimit::Limiter,
        defaults: LimitDefaults,
    ) -> Self {
        self.service = self
            .service
            .with_rate_limits(RateLimiting::new(limiter, defaults));
        self
    }

    /// Sets how requests are authenticated; with a store (open or keyed),
    /// every generation is metered in its ledger at the reference prices.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        let meter = store_of(&auth)
            .map(|store| Meter::new(store.clone(), billing::PriceTable::reference()));
        self.service = self.service.with_meter(meter);
        self.auth = auth;
        self
    }

    /// Posts budget soft-limit notices to `url` besides logging them (see
    /// `service::notify`); call after [`AppState::with_auth`].
    pub fn with_budget_webhook(mut self, url: Option<String>) -> Self {
        let meter = self.service.meter().cloned().map(|m| m.with_webhook(url));
        self.service = self.service.with_meter(meter);
        self
    }

    /// How requests are authenticated.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Sets the web app's sign-up policy and sign-in throttling (by
    /// default: sign-ups wait for approval; the default throttling).
    pub fn with_accounts(mut self, accounts: Accounts) -> Self {
        self.accounts = accounts;
        self
    }

    /// The web app's sign-up policy and sign-in throttling.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Believes `X-Forwarded-For` from these reverse proxies (see
    /// `client`); none by default.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
    }

    /// The reverse proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    /// Reads the front door's settings from the environment:
    /// `PARLANCE_SIGNUP` (`approval`, the default, `open` or `closed`) and
    /// `PARLANCE_TRUSTED_PROXIES` (addresses or CIDR ranges, comma-separated;
    /// none by default). A value that means nothing is an error naming it.
    pub fn with_front_door_env(self) -> Result<Self, String> {
        let signup: Signup = std::env::var(SIGNUP_ENV)
            .unwrap_or_default()
            .parse()
            .map_err(|err| format!("{SIGNUP_ENV}: {err}"))?;
        let proxies: TrustedProxies = std::env::var(TRUSTED_PROXIES_ENV)
            .unwrap_or_default()
            .parse()
            .map_err(|err| format!("{TRUSTED_PROXIES_ENV}: {err}"))?;
        let accounts = self.accounts.clone().with_signup(signup);
        Ok(self.with_accounts(accounts).with_trusted_proxies(proxies))
    }

    /// The ledger writer, when there is a store.
    pub fn meter(&self) -> Option<&Meter> {
        self.service.meter()
    }

    /// Caps a choice whose request sets no `max_tokens` at `tokens` (`0`:
    /// it may fill the context).
    pub fn with_default_max_tokens(mut self, tokens: u32) -> Self {
        self.service = self.service.with_default_max_tokens(tokens);
        self
    }

    /// Writes a thinking model's reasoning under `field` in chat answers.
    pub fn with_reasoning_field(
        mut self,
        field: service::generation::reasoning::ReasoningField,
    ) -> Self {
        self.service = self.service.with_reasoning_field(field);
        self
    }

    /// Serves the embedding models of `embedders` (`POST /v1/embeddings`).
    pub fn with_embedders(mut self, embedders: service::embeddings::Embedders) -> Self {
        self.service = self.service.with_embedders(embedders);
        self
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

    /// How many generations the server holds right now.
    pub fn live_generations(&self) -> usize {
        self.service.live_generations()
    }

    /// The loaded models, in registration order.
    pub fn models(&self) -> impl Iterator<Item = &ServedModel> {
        self.service.models()
    }
}

/// One request in flight, counted until dropped.
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
