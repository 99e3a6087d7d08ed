//! [`Gateway`]: routes a chat request for a model (or alias) to its
//! backends, with failover, retries and fallback models.
//!
//! For one request the candidates are the model's backends followed by
//! those of its fallback models (in order). Within a model, backends of the
//! best priority come first, ordered by weighted random choice (or fewest
//! requests in flight); a sticky key puts the backend that served it last
//! in front while that backend is available. The gateway then makes up to
//! `retry.per_backend` rounds over the candidates, at most
//! `retry.max_attempts` calls in all, sleeping a full-jitter exponential
//! backoff before each call of a later round. A backend whose breaker
//! refuses, or that is cooling down after a 429, is skipped. A streamed
//! answer is committed only when its first token has come (within the
//! first-token timeout): every failure before that is retried elsewhere,
//! as nothing has reached the client. After that, failures end the stream
//! with [`GatewayError::Interrupted`] (see [`crate::stream`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, StreamOptions};
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::broadcast;

use crate::backend::{Backend, ChatReply, ChunkStream};
use crate::config::{GatewayConfig, RetryConfig, RoutingStrategy};
use crate::error::{BackendError, FailureKind, GatewayError};
use crate::pool::{BackendSlot, BackendStatus, BreakerEvent, ProbeGuard};
use crate::stream::{estimate_prompt_tokens, GatewayStream, StreamSetup};

/// Most sticky keys remembered; the map is cleared when it grows past.
const MAX_STICKY_KEYS: usize = 100_000;

/// Per-request routing options.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    /// Route requests with the same key (e.g. a conversation id) to the
    /// same backend while it is available (its prefix cache is warm).
    pub sticky_key: Option<String>,
}

/// Which model and backend answered, after how many calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The gateway's model name that served (a fallback's name when one
    /// did); also the `model` of the answer.
    pub model: String,
    /// The backend's id.
    pub backend: String,
    /// Calls made, this one included.
    pub attempts: u32,
}

/// A routed answer.
pub enum GatewayReply {
    /// A whole answer, its `model` set to the model that served.
    Whole(ChatCompletion, Served),
    /// A committed stream (its first token has come).
    Stream(GatewayStream, Served),
}

impl std::fmt::Debug for GatewayReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayReply::Whole(_, served) => write!(f, "Whole({served:?})"),
            GatewayReply::Stream(_, served) => write!(f, "Stream({served:?})"),
        }
    }
}

pub(crate) struct ModelRoutes {
    pub name: String,
    pub fallbacks: Vec<String>,
    pub routing: RoutingStrategy,
    pub slots: Vec<Arc<BackendSlot>>,
}

/// The router; cheap to clone (shared state).
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: GatewayConfig,
    pub models: HashMap<String, ModelRoutes>,
    pub aliases: HashMap<String, String>,
    pub events: broadcast::Sender<BreakerEvent>,
    pub sticky: Mutex<HashMap<(String, String), String>>,
}

/// What went wrong across the attempts, to choose the final error.
#[derive(Default)]
struct Tally {
    attempts: u32,
    last: Option<BackendError>,
    rate_limited: Option<Duration>,
}

impl Tally {
    /// Records a failed attempt on `slot`; `Some` when the request must
    /// stop here (the upstream rejected the request itself).
    fn failed(
        &mut self,
        slot: &BackendSlot,
        err: BackendError,
        probe: bool,
    ) -> Option<GatewayError> {
        tracing::info!(backend = %slot.id, kind = err.kind.name(), detail = %err.detail,
            "backend attempt failed");
        slot.on_failure(&err.kind, probe);
        match err.kind {
            FailureKind::Rejected { status } => {
                return Some(GatewayError::Rejected {
                    status,
                    message: err.detail,
                    client_error: err.client_error,
                })
            }
            FailureKind::RateLimited { retry_after } => {
                self.wait(retry_after.unwrap_or(Duration::from_secs(1)));
            }
            _ => self.last = Some(err),
        }
        None
    }

    /// Notes that a backend is rate limited for `wait` more.
    fn wait(&mut self, wait: Duration) {
        self.rate_limited = Some(self.rate_limited.map_or(wait, |w| w.min(wait)));
    }
}

impl Gateway {
    /// The model a name or alias resolves to.
    pub fn resolve(&self, name: &str) -> Option<&str> {
        let name = self.inner.aliases.get(name).map_or(name, String::as_str);
        self.inner.models.get(name).map(|m| m.name.as_str())
    }

    /// The configured model names.
    pub fn models(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.models.keys().cloned().collect();
        names.sort();
        names
    }

    /// Breaker state changes from now on (a lagging receiver loses the
    /// oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        self.inner.events.subscribe()
    }

    /// A snapshot of every backend.
    pub fn status(&self) -> Vec<BackendStatus> {
        let mut all: Vec<BackendStatus> = self
            .inner
            .models
            .values()
            .flat_map(|m| m.slots.iter().map(|s| s.status()))
            .collect();
        all.sort_by(|a, b| (&a.model, &a.id).cmp(&(&b.model, &b.id)));
        all
    }

    /// Every backend slot (for health checks).
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Arc<BackendSlot>> {
        self.inner.models.values().flat_map(|m| m.slots.iter())
    }

    /// Routes one chat request; see the module doc for the policy.
    pub async fn chat(
        &self,
        request: ChatCompletionRequest,
        options: RouteOptions,
    ) -> Result<GatewayReply, GatewayError> {
        let request = &request;
        let (reply, served) = self
            .route(&request.model, &options, |slot, probe| async move {
                self.attempt(&slot, request, probe).await
            })
            .await?;
        Ok(match reply {
            Attempted::Whole(whole) => GatewayReply::Whole(whole, served),
            Attempted::Stream(stream) => GatewayReply::Stream(stream, served),
        })
    }

    /// Tries `call` on the backends of model `asked` (a name or an alias)
    /// and its fallbacks, in the order and with the retries the module doc
    /// describes, until one answers; hands back its answer and who served.
    pub(crate) async fn route<T, F, Fut>(
        &self,
        asked: &str,
        options: &RouteOptions,
        mut call: F,
    ) -> Result<(T, Served), GatewayError>
    where
        F: FnMut(Arc<BackendSlot>, bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, BackendError>>,
    {
        let started = Instant::now();
        let model = self
            .resolve(asked)
            .ok_or_else(|| GatewayError::UnknownModel {
                model: asked.to_owned(),
            })?
            .to_owned();
        let candidates = self.candidates(&model, options.sticky_key.as_deref());
        let retry = self.inner.config.retry;
        let mut tally = Tally::default();
        'rounds: for round in 0..retry.per_backend {
            for slot in &candidates {
                if tally.attempts >= retry.max_attempts {
                    break 'rounds;
                }
                let now = Instant::now();
                if let Some(left) = slot.cooldown_left(now) {
                    tally.wait(left);
                    continue;
                }
                if round > 0 {
                    tokio::time::sleep(backoff(&retry, round)).await;
                }
                let Some(probe) = slot.admit(Instant::now()) else {
                    continue;
                };
                tally.attempts += 1;
                let guard = ProbeGuard::new(slot.clone(), probe);
                let outcome = call(slot.clone(), probe).await;
                guard.disarm();
                match outcome {
                    Ok(answer) => {
                        self.remember(options, slot);
                        let served = Served {
                            model: slot.model.clone(),
                            backend: slot.id.clone(),
                            attempts: tally.attempts,
                        };
                        return Ok((answer, served));
                    }
                    Err(err) => {
                        if let Some(fatal) = tally.failed(slot, err, probe) {
                            return Err(fatal);
                        }
                    }
                }
            }
        }
        Err(final_error(&model, tally, started.elapsed()))
    }

    /// The model's backends in the order to try, then its fallbacks'.
    fn candidates(&self, model: &str, sticky: Option<&str>) -> Vec<Arc<BackendSlot>> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([model.to_owned()]);
        while let Some(name) = queue.pop_front() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(routes) = self.inner.models.get(&name) else {
                continue;
            };
            let key = (name == model).then_some(sticky).flatten();
            order.extend(self.plan(routes, key));
            queue.extend(routes.fallbacks.iter().cloned());
        }
        order
    }

    /// One model's backends: available ones by priority (weighted random or
    /// least outstanding within a priority), then the unavailable ones.
    fn plan(&self, routes: &ModelRoutes, sticky: Option<&str>) -> Vec<Arc<BackendSlot>> {
        let now = Instant::now();
        let (mut up, down): (Vec<_>, Vec<_>) =
            routes.slots.iter().cloned().partition(|s| s.available(now));
        let mut rng = rand::thread_rng();
        let mut ordered = Vec::with_capacity(routes.slots.len());
        up.sort_by_key(|s| s.priority);
        while !up.is_empty() {
            let best = up[0].priority;
            let split = up
                .iter()
                .position(|s| s.priority != best)
                .unwrap_or(up.len());
            let mut group: Vec<_> = up.drain(..split).collect();
            match routes.routing {
                RoutingStrategy::Weighted => {
                    while !group.is_empty() {
                        let total: u64 = group.iter().map(|s| u64::from(s.weight)).sum();
                        let mut pick = rng.gen_range(0..total);
                        let index = group
                            .iter()
                            .position(|s| {
                                let w = u64::from(s.weight);
                                if pick < w {
                                    true
                                } else {
                                    pick -= w;
                                    false
                                }
                            })
                            .unwrap_or(0);
                        ordered.push(group.swap_remove(index));
                    }
                }
                RoutingStrategy::LeastOutstanding => {
                    // Fewest in flight per unit of weight; ties broken at random.
                    let mut keyed: Vec<_> = group
                        .into_iter()
                        .map(|s| {
                            let load = u64::from(s.outstanding()) * 1_000_000 / u64::from(s.weight);
                            (load, rng.gen::<u32>(), s)
                        })
                        .collect();
                    keyed.sort_by_key(|(load, tie, _)| (*load, *tie));
                    ordered.extend(keyed.into_iter().map(|(_, _, s)| s));
                }
            }
        }
        if let Some(key) = sticky {
            let remembered = self
                .sticky()
                .get(&(routes.name.clone(), key.to_owned()))
                .cloned();
            if let Some(id) = remembered {
                if let Some(pos) = ordered.iter().position(|s| s.id == id) {
                    let slot = ordered.remove(pos);
                    ordered.insert(0, slot);
                }
            }
        }
        ordered.extend(down);
        ordered
    }

    fn sticky(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        // A plain map; a panic elsewhere cannot leave it inconsistent.
        self.inner.sticky.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, options: &RouteOptions, slot: &BackendSlot) {
        let Some(key) = &options.sticky_key else {
            return;
        };
        let mut sticky = self.sticky();
        if sticky.len() >= MAX_STICKY_KEYS {
            sticky.clear();
        }
        sticky.insert((slot.model.clone(), key.clone()), slot.id.clone());
    }

    /// One call to one backend, up to the first token when streamed.
    async fn attempt(
        &self,
        slot: &Arc<BackendSlot>,
        request: &ChatCompletionRequest,
        probe: bool,
    ) -> Result<Attempted, BackendError> {
        let started = Instant::now();
        let call = slot.begin();
        let mut upstream = request.clone();
        upstream.model = slot.upstream_model.clone();
        let stream = request.is_stream();
        if stream {
            upstream.stream_options = Some(StreamOptions {
                include_usage: Some(true),
            });
        }
        let t = slot.timeouts;
        // The backend enforces its own timeouts; these outer limits hold
        // any backend (the local engine included) to the configured ones.
        let limit = Duration::from_millis(t.headers_ms.saturating_add(if stream {
            0
        } else {
            t.request_ms
        }));
        let reply = match tokio::time::timeout(limit, slot.backend.chat(upstream)).await {
            Ok(reply) => reply?,
            Err(_) => {
                let kind = if stream {
                    FailureKind::HeadersTimeout
                } else {
                    FailureKind::RequestTimeout
                };
                return Err(BackendError::new(
                    kind,
                    format!("no answer within {} ms", limit.as_millis()),
                ));
            }
        };
        let inner = match (reply, stream) {
            (ChatReply::Whole(mut whole), false) => {
                whole.model = slot.model.clone();
                slot.on_success(started.elapsed());
                return Ok(Attempted::Whole(whole));
            }
            (ChatReply::Stream(inner), true) => inner,
            (ChatReply::Whole(whole), true) => whole_as_stream(whole),
            (ChatReply::Stream(_), false) => {
                return Err(BackendError::new(
                    FailureKind::Decode,
                    "the backend streamed an answer asked for whole",
                ))
            }
        };
        let first_token = Duration::from_millis(t.first_token_ms);
        let (inner, buffered) = first_token_of(inner, first_token).await?;
        let setup = StreamSetup {
            model: slot.model.clone(),
            include_usage: request.include_usage(),
            idle: Duration::from_millis(t.idle_ms),
            prompt_estimate: estimate_prompt_tokens(request),
            probe,
            started,
        };
        Ok(Attempted::Stream(GatewayStream::new(
            inner, buffered, setup, call,
        )))
    }
}

enum Attempted {
    Whole(ChatCompletion),
    Stream(GatewayStream),
}

/// Pulls chunks until one carries output (text, a tool call, a finish
/// reason, or the usage chunk), within `limit`. Nothing has reached the
/// client yet, so every failure here is one to fail over from.
async fn first_token_of(
    mut inner: ChunkStream,
    limit: Duration,
) -> Result<(ChunkStream, VecDeque<ChatCompletionChunk>), BackendError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buffered = VecDeque::new();
    loop {
        let next = tokio::time::timeout_at(deadline, inner.next()).await;
        let chunk = match next {
            Err(_) => {
                return Err(BackendError::new(
                    FailureKind::FirstTokenTimeout,
                    format!("no first token within {} ms", limit.as_millis()),
                ))
            }
            Ok(None) => {
                return Err(BackendError::new(
                    FailureKind::Dropped,
                    "the stream ended before any output",
                ))
            }
            Ok(Some(Err(mut err))) => {
                err.produced = false;
                return Err(err);
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        let output = chunk.choices.is_empty()
            || chunk.choices.iter().any(|c| {
                c.finish_reason.is_some()
                    || c.delta.content.as_ref().is_some_and(|t| !t.is_empty())
                    || c.delta.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
            });
        buffered.push_back(chunk);
        if output {
            return Ok((inner, buffered));
        }
    }
}

/// A whole answer as a stream: an opening chunk, one content chunk and a
/// finishing chunk per choice, then the usage chunk.
fn whole_as_stream(whole: ChatCompletion) -> ChunkStream {
    use api::{ChunkChoice, ChunkDelta};
    let mut chunks = Vec::new();
    for choice in &whole.choices {
        let mut delta = ChunkDelta::opening();
        delta.content = choice.message.content.clone();
        let choice = ChunkChoice {
            index: choice.index,
            delta,
            logprobs: choice.logprobs.clone(),
            finish_reason: Some(choice.finish_reason),
        };
        chunks.push(Ok(ChatCompletionChunk::new(
            whole.id.clone(),
            whole.created,
            whole.model.clone(),
            vec![choice],
            true,
        )));
    }
    if let Some(usage) = whole.usage.clone() {
        chunks.push(Ok(ChatCompletionChunk::usage_only(
            whole.id.clone(),
            whole.created,
            whole.model.clone(),
            usage,
        )));
    }
    futures_util::stream::iter(chunks).boxed()
}

/// The wait before a call of retry round `round` (≥ 1): uniform in
/// `[0, min(max, base · 2^(round-1))]`.
fn backoff(retry: &RetryConfig, round: u32) -> Duration {
    let exp = retry
        .backoff_base_ms
        .saturating_mul(1u64 << (round - 1).min(30));
    let cap = exp.min(retry.backoff_max_ms);
    Duration::from_millis(rand::thread_rng().gen_range(0..=cap))
}

fn final_error(model: &str, tally: Tally, elapsed: Duration) -> GatewayError {
    match tally.last {
        Some(last) if last.kind == FailureKind::Unsupported => GatewayError::Unsupported {
            detail: last.detail,
        },
        Some(last) => GatewayError::Exhausted {
            model: model.to_owned(),
            attempts: tally.attempts,
            last,
            elapsed,
        },
        None if tally.rate_limited.is_some() => GatewayError::RateLimited {
            model: model.to_owned(),
            retry_after: tally.rate_limited,
        },
        None => GatewayError::NoHealthyBackend {
            model: model.to_owned(),
        },
    }
}

/// A backend shared between the gateway and its caller.
pub type SharedBackend = Arc<dyn Backend>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_cap() {
        let retry = RetryConfig {
            max_attempts: 10,
            per_backend: 10,
            backoff_base_ms: 10,
            backoff_max_ms: 35,
        };
        for round in 1..40 {
            let wait = backoff(&retry, round);
            let cap = (10u64 << (round - 1).min(30)).min(35);
            assert!(
                wait <= Duration::from_millis(cap),
                "round {round}: {wait:?}"
            );
        }
    }
}
