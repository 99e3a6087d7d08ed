//! Rate limits: requests per minute (RPM) and tokens per minute (TPM) for
//! each request's API key and its project, and the `x-ratelimit-*` values a
//! request's answer reports.
//!
//! The buckets themselves live in the `ratelimit` crate (in-process or in
//! Redis); this module decides *whose* buckets a request draws on and with
//! what limits:
//!
//! - Two subjects per request: `key:<api_key_id>` with the key's own limits
//!   (else the server's per-key defaults) and `project:<project_id>` with the
//!   project's own (else the server's per-project defaults, none unless
//!   configured). A limit of `0` means "no limit" at any level. Project
//!   limits are read from the store and cached for [`PROJECT_CACHE_TTL`].
//! - [`RateLimiting::admit`] takes one request from each subject before any
//!   work and hands back the request's [`RequestLimits`]; the server's
//!   middleware keeps it with the request and passes it explicitly to
//!   [`crate::Meter::begin`], which takes prompt tokens + the most the
//!   request may generate ([`RequestLimits::charge_tokens`]). The
//!   [`TokenCharge`] it gets back is corrected with the real usage when the
//!   charge settles. [`RequestLimits::headers`] gives the six headers from
//!   the most constraining subject (per dimension: the fewest remaining).
//!
//! Subjects are drawn on in order, key first: a refusal by the key touches
//! nothing of the project's; a refusal by the project gives back the key's
//! tokens, though not its one request (the buckets have no request refund).
//! When the store behind the limiter (Redis) fails or does not answer within
//! [`LIMITER_TIMEOUT`], the request is let through without limits (and
//! without the headers the failed bucket would have given), the failure is
//! logged, and the limiter is skipped for [`LIMITER_PAUSE`]: a limiter
//! outage must not take the API down with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use api::{ApiError, RateLimitResource};
use ratelimit::{
    format_duration, ratelimit_headers, retry_headers, Cost, Decision, Limiter, Limits,
    RateLimitError, RateLimiter, Snapshot, MAX_LIMIT,
};
use store::Store;

use crate::Tenant;

/// The default requests per minute of a key without its own limit.
pub const DEFAULT_KEY_RPM: u64 = 10_000;
/// The default tokens per minute of a key without its own limit.
pub const DEFAULT_KEY_TPM: u64 = 10_000_000;
/// How long a project's limits are trusted before the store is asked again.
pub const PROJECT_CACHE_TTL: Duration = Duration::from_secs(5);
/// Past this many cached projects, stale entries are dropped.
const PROJECT_CACHE_MAX: usize = 10_000;
/// The longest one limiter call may take before the request goes ahead
/// without it (a hung Redis must not hang the API).
pub const LIMITER_TIMEOUT: Duration = Duration::from_millis(500);
/// After a limiter failure, how long requests skip the limiter altogether,
/// so an outage costs one timeout per window rather than one per request.
pub const LIMITER_PAUSE: Duration = Duration::from_secs(5);

/// The server's limits for keys and projects that have none of their own.
/// `None` (or `Some(0)`) in a field: no limit on that dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitDefaults {
    /// Each key's limits unless the key sets its own.
    pub key: store::RateLimits,
    /// Each project's limits (over all its keys) unless it sets its own.
    pub project: store::RateLimits,
}

impl Default for LimitDefaults {
    /// [`DEFAULT_KEY_RPM`] and [`DEFAULT_KEY_TPM`] per key, no project limit.
    fn default() -> Self {
        LimitDefaults {
            key: store::RateLimits {
                rpm: Some(DEFAULT_KEY_RPM),
                tpm: Some(DEFAULT_KEY_TPM),
            },
            project: store::RateLimits::default(),
        }
    }
}

/// The limiter, the defaults and the project cache, shared by every request.
pub struct RateLimiting {
    limiter: Limiter,
    defaults: LimitDefaults,
    projects: Mutex<HashMap<(String, String), (Instant, store::RateLimits)>>,
    /// Set after a limiter failure: skip it until then.
    paused_until: Mutex<Option<Instant>>,
}

impl RateLimiting {
    /// Limits kept in `limiter`, with `defaults` where keys and projects
    /// set none.
    pub fn new(limiter: Limiter, defaults: LimitDefaults) -> Self {
        RateLimiting {
            limiter,
            defaults,
            projects: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
        }
    }

    /// Whether a recent failure says to skip the limiter for now.
    fn paused(&self) -> bool {
        let until = *self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|until| Instant::now() < until)
    }

    /// Logs a limiter failure and skips the limiter for [`LIMITER_PAUSE`].
    fn fail_open(&self, subject: &Subject, err: &dyn std::fmt::Display) {
        let mut until = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *until = Some(Instant::now() + LIMITER_PAUSE);
        tracing::warn!(
            error = %err,
            subject = %subject.key(),
            pause_secs = LIMITER_PAUSE.as_secs(),
            "rate limiter unavailable; letting requests through unlimited"
        );
    }

    /// [`RateLimiter::acquire`] within [`LIMITER_TIMEOUT`].
    async fn acquire(&self, subject: &Subject, cost: Cost) -> Result<Decision, RateLimitError> {
        let key = subject.key();
        let call = self.limiter.acquire(&key, &subject.limits, cost);
        match tokio::time::timeout(LIMITER_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(RateLimitError::BadReply(format!(
                "no answer within {LIMITER_TIMEOUT:?}"
            ))),
        }
    }

    /// Adds `token_delta` to the subject's tokens (negative: a refund)
    /// within [`LIMITER_TIMEOUT`]; a failure is logged, never returned.
    async fn adjust(&self, subject: &Subject, token_delta: i64) {
        if token_delta == 0 || self.paused() {
            return;
        }
        let key = subject.key();
        let call = self.limiter.adjust(&key, &subject.limits, token_delta);
        match tokio::time::timeout(LIMITER_TIMEOUT, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => self.fail_open(subject, &err),
            Err(_) => self.fail_open(subject, &"no answer in time"),
        }
    }

    /// The subjects `tenant`'s requests draw on: its key, then its project
    /// (either left out when it has no limit at all).
    async fn subjects(&self, store: Option<&Store>, tenant: &Tenant) -> Vec<Subject> {
        let project = self
            .project_limits(store, &tenant.org_id, &tenant.project_id)
            .await;
        [
            Subject::new(
                Scope::Key,
                &tenant.api_key_id,
                tenant.key_limits,
                self.defaults.key,
            ),
            Subject::new(
                Scope::Project,
                &tenant.project_id,
                project,
                self.defaults.project,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The project's own limits, from the cache while fresh, else the store.
    async fn project_limits(
        &self,
        store: Option<&Store>,
        org_id: &str,
        project_id: &str,
    ) -> store::RateLimits {
        let key = (org_id.to_owned(), project_id.to_owned());
        let cached = self.cache().get(&key).copied();
        if let Some((at, limits)) = cached {
            if at.elapsed() < PROJECT_CACHE_TTL {
                return limits;
            }
        }
        let Some(store) = store else {
            return store::RateLimits::default();
        };
        let limits = match store.get_project(org_id, project_id).await {
            Ok(project) => project.limits,
            // The built-in tenants' project may not be a row: no own limits.
            Err(err) if err.kind() == store::ErrorKind::NotFound => store::RateLimits::default(),
            Err(err) => {
                tracing::warn!(error = %err, project_id, "cannot read project limits; using the defaults");
                return cached.map_or_else(store::RateLimits::default, |(_, limits)| limits);
            }
        };
        let mut cache = self.cache();
        if cache.len() >= PROJECT_CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < PROJECT_CACHE_TTL);
        }
        cache.insert(key, (Instant::now(), limits));
        limits
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), (Instant, store::RateLimits)>> {
        self.projects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whose bucket: an API key or a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Key,
    Project,
}

/// One bucket pair a request draws on.
#[derive(Debug, Clone)]
struct Subject {
    scope: Scope,
    id: String,
    /// The limits; an unlimited dimension holds [`MAX_LIMIT`] and is never
    /// charged.
    limits: Limits,
    limits_requests: bool,
    limits_tokens: bool,
}

impl Subject {
    /// The subject with `own` limits, falling back to `default` per
    /// dimension; `None` when neither dimension is limited.
    fn new(
        scope: Scope,
        id: &str,
        own: store::RateLimits,
        default: store::RateLimits,
    ) -> Option<Subject> {
        let pick = |own: Option<u64>, default: Option<u64>| {
            own.or(default).filter(|&n| n > 0).map(|n| n.min(MAX_LIMIT))
        };
        let rpm = pick(own.rpm, default.rpm);
        let tpm = pick(own.tpm, default.tpm);
        if rpm.is_none() && tpm.is_none() {
            return None;
        }
        Some(Subject {
            scope,
            id: id.to_owned(),
            limits: Limits::new(rpm.unwrap_or(MAX_LIMIT), tpm.unwrap_or(MAX_LIMIT)),
            limits_requests: rpm.is_some(),
            limits_tokens: tpm.is_some(),
        })
    }

    /// The limiter's name for the subject.
    fn key(&self) -> String {
        match self.scope {
            Scope::Key => format!("key:{}", self.id),
            Scope::Project => format!("project:{}", self.id),
        }
    }

    /// How the subject is named to a client.
    fn describe(&self) -> String {
        match self.scope {
            Scope::Key => format!("API key {}", self.id),
            Scope::Project => format!("project {}", self.id),
        }
    }

    /// `cost` restricted to the dimensions this subject limits.
    fn cost(&self, cost: Cost) -> Cost {
        Cost {
            requests: if self.limits_requests {
                cost.requests
            } else {
                0
            },
            tokens: if self.limits_tokens { cost.tokens } else { 0 },
        }
    }
}

/// Why a request was refused.
enum Refusal {
    /// A bucket is short; retry after the wait.
    Limited {
        resource: RateLimitResource,
        subject: String,
        retry_after: Duration,
        limit: u64,
        remaining: u64,
        requested: u64,
    },
    /// The request alone is more than the limit: retrying cannot help.
    TooLarge {
        resource: RateLimitResource,
        subject: String,
        limit: u64,
        requested: u64,
    },
}

impl Refusal {
    /// The error object the client is shown, worded as OpenAI words it.
    fn error(&self) -> ApiError {
        match self {
            Refusal::Limited {
                resource,
                subject,
                retry_after,
                limit,
                remaining,
                requested,
            } => ApiError::RateLimitExceeded {
                message: format!(
                    "Rate limit reached for {} on {subject}: Limit {limit}, Used {}, \
                     Requested {requested}. Please try again in {}.",
                    per_minute(*resource),
                    limit.saturating_sub(*remaining),
                    format_duration(*retry_after),
                ),
                resource: *resource,
                retry_after_ms: Some(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)),
            },
            Refusal::TooLarge {
                resource,
                subject,
                limit,
                requested,
            } => ApiError::RateLimitExceeded {
                message: format!(
                    "Request too large for {} on {subject}: Limit {limit}, Requested \
                     {requested}. The input or output tokens must be reduced in order to \
                     run successfully.",
                    per_minute(*resource),
                ),
                resource: *resource,
                retry_after_ms: None,
            },
        }
    }
}

fn per_minute(resource: RateLimitResource) -> &'static str {
    match resource {
        RateLimitResource::Requests => "requests per min (RPM)",
        RateLimitResource::Tokens => "tokens per min (TPM)",
    }
}

/// What a request has learned of its buckets so far, for its headers.
#[derive(Default)]
struct Progress {
    /// The latest snapshot of each subject (same order as the subjects).
    snapshots: Vec<Option<Snapshot>>,
    /// Set when the request was refused for a while.
    retry_after: Option<Duration>,
    /// Set when the request can never pass (`x-should-retry: false`).
    too_large: bool,
}

/// One request's subjects and what their buckets said.
pub struct RequestLimits {
    limiting: Arc<RateLimiting>,
    subjects: Vec<Subject>,
    progress: Mutex<Progress>,
}

impl RequestLimits {
    fn new(limiting: Arc<RateLimiting>, subjects: Vec<Subject>) -> Self {
        let progress = Progress {
            snapshots: vec![None; subjects.len()],
            ..Progress::default()
        };
        RequestLimits {
            limiting,
            subjects,
            progress: Mutex::new(progress),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `cost` from every subject, key first, or from none (as far as
    /// tokens go) and says why. With `probe`, a subject asked for nothing
    /// is still asked, for its snapshot. A failing limiter lets the request
    /// through.
    async fn acquire(&self, cost: Cost, probe: bool) -> Result<(), Refusal> {
        let limiting = &self.limiting;
        let mut taken: Vec<(&Subject, u64)> = Vec::new();
        for (index, subject) in self.subjects.iter().enumerate() {
            let wanted = subject.cost(cost);
            let asks_nothing = wanted.requests == 0 && wanted.tokens == 0;
            if (asks_nothing && !probe) || limiting.paused() {
                continue;
            }
            let refusal = match limiting.acquire(subject, wanted).await {
                Ok(Decision::Allowed(snapshot)) => {
                    self.progress().snapshots[index] = Some(snapshot);
                    taken.push((subject, wanted.tokens));
                    continue;
                }
                Ok(Decision::Limited {
                    retry_after,
                    snapshot,
                }) => {
                    let mut progress = self.progress();
                    progress.snapshots[index] = Some(snapshot);
                    progress.retry_after = Some(retry_after);
                    let short_of_requests = snapshot.remaining_requests < wanted.requests;
                    let (resource, limit, remaining, requested) = if short_of_requests {
                        let r = RateLimitResource::Requests;
                        (
                            r,
                            snapshot.limit_requests,
                            snapshot.remaining_requests,
                            wanted.requests,
                        )
                    } else {
                        let r = RateLimitResource::Tokens;
                        (
                            r,
                            snapshot.limit_tokens,
                            snapshot.remaining_tokens,
                            wanted.tokens,
                        )
                    };
                    Refusal::Limited {
                        resource,
                        subject: subject.describe(),
                        retry_after,
                        limit,
                        remaining,
                        requested,
                    }
                }
                Err(RateLimitError::RequestTooLarge {
                    dimension,
                    requested,
                    limit,
                }) => {
                    self.progress().too_large = true;
                    let resource = if dimension == "requests" {
                        RateLimitResource::Requests
                    } else {
                        RateLimitResource::Tokens
                    };
                    Refusal::TooLarge {
                        resource,
                        subject: subject.describe(),
                        limit,
                        requested,
                    }
                }
                Err(err) => {
                    limiting.fail_open(subject, &err);
                    continue;
                }
            };
            for (subject, tokens) in taken {
                let refund = -i64::try_from(tokens.min(MAX_LIMIT)).unwrap_or(0);
                limiting.adjust(subject, refund).await;
            }
            return Err(refusal);
        }
        Ok(())
    }

    /// The `x-ratelimit-*` headers of the answer and, when it is a 429
    /// (`refused`), the retry headers.
    pub fn headers(&self, refused: bool) -> Vec<(&'static str, String)> {
        let progress = self.progress();
        let pairs = self.subjects.iter().zip(progress.snapshots.iter());
        let tightest = |limits: fn(&Subject) -> bool, remaining: fn(&Snapshot) -> u64| {
            pairs
                .clone()
                .filter(|(subject, _)| limits(subject))
                .filter_map(|(_, snapshot)| *snapshot)
                .min_by_key(remaining)
        };
        let requests = tightest(|s| s.limits_requests, |s| s.remaining_requests);
        let tokens = tightest(|s| s.limits_tokens, |s| s.remaining_tokens);
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        if let Some(snapshot) = requests {
            headers.extend(
                ratelimit_headers(&snapshot)
                    .into_iter()
                    .filter(|(name, _)| name.ends_with("-requests")),
            );
        }
        if let Some(snapshot) = tokens {
            headers.extend(
                ratelimit_headers(&snapshot)
                    .into_iter()
                    .filter(|(name, _)| name.ends_with("-tokens")),
            );
        }
        if refused {
            if let Some(wait) = progress.retry_after {
                headers.extend(retry_headers(wait));
            }
            if progress.too_large {
                headers.push(("x-should-retry", "false".to_owned()));
            }
        }
        headers
    }

    /// Takes `tokens` (prompt + most that may be generated) from the
    /// request's key and project: a 429 error when one cannot afford them
    /// now (type `tokens`) or ever ("Request too large").
    pub async fn charge_tokens(&self, tokens: u64) -> Result<TokenCharge, ApiError> {
        let cost = Cost {
            requests: 0,
            tokens,
        };
        self.acquire(cost, false)
            .await
            .map_err(|refusal| refusal.error())?;
        let subjects: Vec<Subject> = self
            .subjects
            .iter()
            .filter(|subject| subject.limits_tokens)
            .cloned()
            .collect();
        Ok(TokenCharge {
            limiting: Arc::clone(&self.limiting),
            subjects,
            estimated: tokens,
        })
    }
}

/// What [`RateLimiting::admit`] decides for one request.
pub enum Admission {
    /// Neither the key nor the project is limited.
    Unlimited,
    /// Admitted: the request's limits, for its token charge and headers.
    Admitted(Arc<RequestLimits>),
    /// A bucket is spent: the 429, and the limits for the headers.
    Refused(Arc<RequestLimits>, ApiError),
}

impl RateLimiting {
    /// Takes one request from `tenant`'s key and project (project limits
    /// read from `store`, when there is one).
    pub async fn admit(self: &Arc<Self>, store: Option<&Store>, tenant: &Tenant) -> Admission {
        let subjects = self.subjects(store, tenant).await;
        if subjects.is_empty() {
            return Admission::Unlimited;
        }
        let limits = Arc::new(RequestLimits::new(Arc::clone(self), subjects));
        let one_request = Cost {
            requests: 1,
            tokens: 0,
        };
        match limits.acquire(one_request, true).await {
            Ok(()) => Admission::Admitted(limits),
            Err(refusal) => {
                let error = refusal.error();
                Admission::Refused(limits, error)
            }
        }
    }
}

/// Tokens taken from a request's key and project, refundable once its real
/// usage is known. Dropping it keeps the whole estimate charged (the
/// buckets refill within a minute either way).
#[must_use = "settle it with the real usage to refund the unused estimate"]
pub struct TokenCharge {
    limiting: Arc<RateLimiting>,
    subjects: Vec<Subject>,
    estimated: u64,
}

impl std::fmt::Debug for TokenCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCharge")
            .field("subjects", &self.subjects)
            .field("estimated", &self.estimated)
            .finish_non_exhaustive()
    }
}

impl TokenCharge {
    /// The tokens taken: prompt + the most the request may generate.
    pub fn estimated(&self) -> u64 {
        self.estimated
    }

    /// Corrects every subject by `actual_tokens − estimated` (prompt plus
    /// generated tokens, all choices together): a refund when the request
    /// used less than it was charged. Failures are logged, never returned.
    pub async fn settle(self, actual_tokens: u64) {
        let delta = i128::from(actual_tokens) - i128::from(self.estimated);
        let bound = i128::from(MAX_LIMIT);
        let delta = i64::try_from(delta.clamp(-bound, bound)).unwrap_or(0);
        for subject in &self.subjects {
            self.limiting.adjust(subject, delta).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u64>, tpm: Option<u64>) -> store::RateLimits {
        store::RateLimits { rpm, tpm }
    }

    #[test]
    fn own_limits_override_defaults_per_dimension() {
        let subject = Subject::new(
            Scope::Key,
            "key_a",
            limits(Some(5), None),
            limits(Some(100), Some(1_000)),
        )
        .unwrap();
        assert_eq!(subject.limits, Limits::new(5, 1_000));
        assert!(subject.limits_requests && subject.limits_tokens);
        assert_eq!(subject.key(), "key:key_a");
    }

    #[test]
    fn zero_means_no_limit_and_no_limit_at_all_is_no_subject() {
        let subject = Subject::new(
            Scope::Project,
            "proj_a",
            limits(Some(0), None),
            limits(Some(100), Some(1_000)),
        )
        .unwrap();
        assert!(!subject.limits_requests);
        assert_eq!(subject.limits.requests_per_minute, MAX_LIMIT);
        assert_eq!(
            subject.cost(Cost {
                requests: 1,
                tokens: 7
            }),
            Cost {
                requests: 0,
                tokens: 7
            }
        );
        assert!(Subject::new(
            Scope::Project,
            "p",
            limits(None, None),
            limits(None, Some(0))
        )
        .is_none());
    }

    #[test]
    fn refusals_read_like_openai() {
        let limited = Refusal::Limited {
            resource: RateLimitResource::Requests,
            subject: "API key key_a".into(),
            retry_after: Duration::from_millis(20_000),
            limit: 3,
            remaining: 0,
            requested: 1,
        }
        .error();
        let object = limited.to_object();
        assert!(
            object
                .message
                .starts_with("Rate limit reached for requests"),
            "{}",
            object.message
        );
        assert!(
            object.message.contains("Limit 3, Used 3, Requested 1"),
            "{}",
            object.message
        );
        assert_eq!(object.error_type, "requests");
        assert_eq!(object.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(limited.retry_after_secs(), Some(20));
        let too_large = Refusal::TooLarge {
            resource: RateLimitResource::Tokens,
            subject: "project proj_a".into(),
            limit: 10,
            requested: 50,
        }
        .error();
        assert!(too_large
            .to_string()
            .starts_with("Request too large for tokens"));
        assert_eq!(too_large.error_type(), "tokens");
        assert_eq!(too_large.retry_after_secs(), None);
    }

    #[tokio::test]
    async fn a_refusal_by_the_project_refunds_the_keys_tokens() {
        let limiting = Arc::new(RateLimiting::new(
            Limiter::Memory(ratelimit::MemoryLimiter::new()),
            LimitDefaults::default(),
        ));
        let key = Subject::new(
            Scope::Key,
            "k",
            limits(Some(10), Some(100)),
            limits(None, None),
        )
        .unwrap();
        let project = Subject::new(
            Scope::Project,
            "p",
            limits(None, Some(50)),
            limits(None, None),
        )
        .unwrap();
        let request = RequestLimits::new(Arc::clone(&limiting), vec![key.clone(), project]);
        let cost = Cost {
            requests: 0,
            tokens: 40,
        };
        assert!(request.acquire(cost, false).await.is_ok());
        let refused = request.acquire(cost, false).await;
        assert!(
            matches!(refused, Err(Refusal::Limited { ref subject, .. }) if subject == "project p")
        );
        // The key kept only the first 40 tokens.
        let after = limiting
            .limiter
            .acquire(
                &key.key(),
                &key.limits,
                Cost {
                    requests: 0,
                    tokens: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(after.snapshot().remaining_tokens, 60);
    }
}
