//! The gateway's configuration: models, their aliases, fallbacks and
//! backends; retry, breaker and health-check policy. Serde types meant to
//! sit under `[gateway]` in `parlance.toml`; every duration is an integer
//! number of milliseconds (`*_ms`). [`GatewayConfig::validate`] checks the
//! whole and names the offending entry. See `docs/GATEWAY.md`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the gateway needs to route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The models served, each with its backends.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// Retries and backoff.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Circuit breaker policy (the same for every backend).
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Active health checks.
    #[serde(default)]
    pub health: HealthConfig,
}

/// One model as clients name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients use (and the `model` reported back).
    pub name: String,
    /// Other names that resolve to this model.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Models to try, in order, when every backend of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// How a backend is chosen among the healthy ones of the best priority.
    #[serde(default)]
    pub routing: RoutingStrategy,
    /// The backends serving this model; at least one.
    pub backends: Vec<BackendConfig>,
}

/// How a backend is chosen among equals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingStrategy {
    /// Random, in proportion to `weight`.
    #[default]
    Weighted,
    /// The one with the fewest requests in flight (ties by weight).
    LeastOutstanding,
}

/// The kind of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// This process's own engine (supplied by the server).
    Local,
    /// Any OpenAI-compatible server.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

/// One backend of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// A unique id (for the status page and incidents); default
    /// `<model>#<position>`.
    #[serde(default)]
    pub id: Option<String>,
    /// What kind of upstream it is.
    pub kind: BackendKind,
    /// The base URL including the version path (`https://host/v1`); not
    /// used by `local`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The upstream's name for the model; default the model's name.
    #[serde(default)]
    pub model: Option<String>,
    /// The API key itself (prefer `api_key_env`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// The environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Relative share of traffic among backends of equal priority (≥ 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Lower is preferred; higher priorities serve only when all of a
    /// lower one are unavailable.
    #[serde(default)]
    pub priority: u32,
    /// Timeouts for this backend.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// The path probed by health checks, relative to `base_url`.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// `max_tokens` sent to Anthropic when the request gives none.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
}

fn default_weight() -> u32 {
    1
}
fn default_health_path() -> String {
    "models".to_owned()
}
fn default_max_tokens() -> u32 {
    4096
}

impl BackendConfig {
    /// The upstream's name for the model served as `model`.
    pub fn upstream_model<'a>(&'a self, model: &'a str) -> &'a str {
        self.model.as_deref().unwrap_or(model)
    }

    /// The API key: `api_key`, else the variable named by `api_key_env`.
    pub fn resolve_api_key(&self) -> Result<Option<String>, ConfigError> {
        if let Some(key) = &self.api_key {
            return Ok(Some(key.clone()));
        }
        match &self.api_key_env {
            None => Ok(None),
            Some(var) => std::env::var(var)
                .map(Some)
                .map_err(|_| ConfigError::MissingKeyEnv { var: var.clone() }),
        }
    }
}

/// How long a backend may take, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Making the TCP/TLS connection.
    pub connect_ms: u64,
    /// From sending the request to the response head.
    pub headers_ms: u64,
    /// From the response head to the first generated text (streams).
    pub first_token_ms: u64,
    /// The longest silence inside a stream.
    pub idle_ms: u64,
    /// A whole non-streamed answer, head to end.
    pub request_ms: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect_ms: 5_000,
            headers_ms: 30_000,
            first_token_ms: 30_000,
            idle_ms: 30_000,
            request_ms: 600_000,
        }
    }
}

/// Retry policy: attempts while no byte has reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Calls at most per request, all backends and fallbacks together.
    pub max_attempts: u32,
    /// Calls at most to one backend per request.
    pub per_backend: u32,
    /// Backoff before retrying the same backend: a random wait in
    /// `[0, min(max, base · 2^retry)]` (full jitter).
    pub backoff_base_ms: u64,
    /// The cap of the backoff.
    pub backoff_max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 4,
            per_backend: 2,
            backoff_base_ms: 50,
            backoff_max_ms: 2_000,
        }
    }
}

/// Circuit breaker policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Open after this many failures in a row.
    pub consecutive_failures: u32,
    /// Open when the failure share of the window reaches this percentage…
    pub error_rate_percent: u32,
    /// …over the last this many outcomes…
    pub window: u32,
    /// …once the window holds at least this many.
    pub min_requests: u32,
    /// How long it stays open before letting a probe through.
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            error_rate_percent: 50,
            window: 50,
            min_requests: 20,
            open_ms: 10_000,
        }
    }
}

/// Active health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Whether to probe at all.
    pub enabled: bool,
    /// Time between probes of one backend.
    pub interval_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: true,
            interval_ms: 10_000,
        }
    }
}

/// A configuration that cannot be used, naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A model's name is empty.
    #[error("gateway.models[{index}]: the name is empty")]
    EmptyName {
        /// The model's position.
        index: usize,
    },
    /// Two models or aliases share a name.
    #[error("gateway: the name `{name}` is used twice (as a model or alias)")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// Two backends share an id.
    #[error("gateway: the backend id `{id}` is used twice")]
    DuplicateBackendId {
        /// The id.
        id: String,
    },
    /// A model has no backend.
    #[error("gateway model `{model}`: at least one backend is needed")]
    NoBackends {
        /// The model.
        model: String,
    },
    /// A fallback names an unknown model.
    #[error("gateway model `{model}`: the fallback `{fallback}` is not a configured model")]
    UnknownFallback {
        /// The model.
        model: String,
        /// The unknown name.
        fallback: String,
    },
    /// A backend's field is invalid.
    #[error("gateway model `{model}`, backend {index}: {problem}")]
    InvalidBackend {
        /// The model.
        model: String,
        /// The backend's position.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// A policy value is out of range.
    #[error("gateway.{field}: {problem}")]
    InvalidPolicy {
        /// The field, e.g. `breaker.window`.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// `api_key_env` names an unset variable.
    #[error("the environment variable `{var}` (an api_key_env) is not set")]
    MissingKeyEnv {
        /// The variable.
        var: String,
    },
    /// A backend could not be built.
    #[error("gateway backend `{id}`: {problem}")]
    Build {
        /// The backend's id.
        id: String,
        /// What went wrong.
        problem: String,
    },
}

impl GatewayConfig {
    /// Checks names, references, URLs and ranges; the first problem found
    /// is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (index, model) in self.models.iter().enumerate() {
            if model.name.trim().is_empty() {
                return Err(ConfigError::EmptyName { index });
            }
            for name in std::iter::once(&model.name).chain(&model.aliases) {
                if !names.insert(name.as_str()) {
                    return Err(ConfigError::DuplicateName { name: name.clone() });
                }
            }
        }
        let models: HashSet<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        let mut ids = HashSet::new();
        for model in &self.models {
            if model.backends.is_empty() {
                return Err(ConfigError::NoBackends {
                    model: model.name.clone(),
                });
            }
            if let Some(fallback) = model
                .fallbacks
                .iter()
                .find(|f| !models.contains(f.as_str()) || **f == model.name)
            {
                return Err(ConfigError::UnknownFallback {
                    model: model.name.clone(),
                    fallback: fallback.clone(),
                });
            }
            for (index, backend) in model.backends.iter().enumerate() {
                validate_backend(backend).map_err(|problem| ConfigError::InvalidBackend {
                    model: model.name.clone(),
                    index,
                    problem,
                })?;
                let id = backend_id(&model.name, index, backend);
                if !ids.insert(id.clone()) {
                    return Err(ConfigError::DuplicateBackendId { id });
                }
            }
        }
        self.validate_policy()
    }

    fn validate_policy(&self) -> Result<(), ConfigError> {
        let policy = |field, ok: bool, problem: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::InvalidPolicy {
                    field,
                    problem: problem.to_owned(),
                })
            }
        };
        policy(
            "retry.max_attempts",
            self.retry.max_attempts >= 1,
            "must be at least 1",
        )?;
        policy(
            "retry.per_backend",
            self.retry.per_backend >= 1,
            "must be at least 1",
        )?;
        policy(
            "retry.backoff_max_ms",
            self.retry.backoff_max_ms >= self.retry.backoff_base_ms,
            "must be at least backoff_base_ms",
        )?;
        policy(
            "breaker.consecutive_failures",
            self.breaker.consecutive_failures >= 1,
            "must be at least 1",
        )?;
        policy(
            "breaker.error_rate_percent",
            (1..=100).contains(&self.breaker.error_rate_percent),
            "must be between 1 and 100",
        )?;
        policy(
            "breaker.window",
            self.breaker.window >= 1,
            "must be at least 1",
        )?;
        policy(
            "breaker.min_requests",
            self.breaker.min_requests <= self.breaker.window,
            "must not exceed breaker.window",
        )?;
        policy(
            "breaker.open_ms",
            self.breaker.open_ms >= 1,
            "must be at least 1",
        )?;
        policy(
            "health.interval_ms",
            self.health.interval_ms >= 1,
            "must be at least 1",
        )
    }

    /// The model a name or alias resolves to.
    pub fn resolve(&self, name: &str) -> Option<&ModelConfig> {
        self.models
            .iter()
            .find(|m| m.name == name || m.aliases.iter().any(|a| a == name))
    }

    /// Alias → model name, for every alias.
    pub fn aliases(&self) -> HashMap<String, String> {
        self.models
            .iter()
            .flat_map(|m| m.aliases.iter().map(|a| (a.clone(), m.name.clone())))
            .collect()
    }
}

/// A backend's id: its own, else `<model>#<position>`.
pub fn backend_id(model: &str, index: usize, backend: &BackendConfig) -> String {
    backend
        .id
        .clone()
        .unwrap_or_else(|| format!("{model}#{index}"))
}

fn validate_backend(backend: &BackendConfig) -> Result<(), String> {
    if backend.weight == 0 {
        return Err("weight must be at least 1".into());
    }
    if backend.api_key.is_some() && backend.api_key_env.is_some() {
        return Err("give api_key or api_key_env, not both".into());
    }
    match (backend.kind, &backend.base_url) {
        (BackendKind::Local, Some(_)) => return Err("a local backend takes no base_url".into()),
        (BackendKind::Local, None) => {}
        (_, None) => return Err("base_url is required".into()),
        (_, Some(url)) => {
            let parsed =
                reqwest::Url::parse(url).map_err(|err| format!("base_url `{url}`: {err}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("base_url `{url}` must be http or https"));
            }
        }
    }
    let t = &backend.timeouts;
    for (name, value) in [
        ("connect_ms", t.connect_ms),
        ("headers_ms", t.headers_ms),
        ("first_token_ms", t.first_token_ms),
        ("idle_ms", t.idle_ms),
        ("request_ms", t.request_ms),
    ] {
        if value == 0 {
            return Err(format!("timeouts.{name} must be at least 1"));
        }
    }
    if backend.default_max_tokens == 0 {
        return Err("default_max_tokens must be at least 1".into());
    }
    Ok(())
}

impl TimeoutsConfig {
    /// Milliseconds to a duration.
    pub fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }
}
