//! [`Service`]: the one request path from a parsed request to a running
//! answer — resolve the model, reserve, generate (locally, or routed
//! through the gateway), settle — shared by every endpoint, with no HTTP in
//! it.
//!
//! - [`Service::chat`]: a chat request. A model served by exactly one local
//!   engine takes the direct path ([`ChatStart::Local`]): the prompt is
//!   rendered and tokenized, reserved with its exact size, and generated
//!   ([`crate::generation`]). Every other model is routed by the gateway
//!   (failover, retries, fallbacks, breakers): reserved with an estimate of
//!   the prompt, then settled with the upstream's reported usage, for the
//!   backend and model that served ([`ChatStart::Routed`] streams,
//!   [`ChatStart::RoutedWhole`] answers).
//! - [`Service::start_local`]: any endpoint's local generation (chat's
//!   direct path, completions): reserve → submit → [`Answer`], which owns
//!   the charge and settles it.
//! - [`Service::begin_charge`]: the reservation of a metered request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::{ChatCompletion, ChatCompletionRequest};
use gateway::{GatewayConfig, GatewayReply, GatewayStream, RouteOptions};
use tokio::sync::watch;

use crate::generation::chat::{self as local_chat, ChatChunks};
use crate::generation::{submit_all, Answer, AnswerDefaults, Settings};
use crate::limits::{RateLimiting, RequestLimits};
use crate::metering::{billed, Charge, Meter, Outcome, Planned};
use crate::routing::{Resolved, Routing, ServedModel};
use crate::stored_completions::{ChunkKeeper, Keeper};
use crate::{Result, Tenant};

/// Completion tokens per choice reserved for a routed request that sets no
/// `max_tokens` (the upstream's context length is not known here).
pub const REMOTE_DEFAULT_MAX_TOKENS: u64 = 4096;

/// One request as the service sees it: who sent it, under which id, and
/// the rate limits it draws on.
#[derive(Clone, Default)]
pub struct RequestContext {
    /// The tenant billed; `None` when nothing is metered (no store).
    pub tenant: Option<Tenant>,
    /// The request id: the key of its ledger row.
    pub request_id: String,
    /// The request's rate limits, when its key or project has any.
    pub limits: Option<Arc<RequestLimits>>,
    /// The endpoint it came through (`/v1/chat/completions`, …), written
    /// in its ledger row.
    pub endpoint: String,
}

/// What serving requests needs: the local models, their routing, the meter
/// and the rate limits. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    models: Arc<BTreeMap<String, ServedModel>>,
    /// Registration order: the first model is the default of the
    /// model-less llama.cpp routes.
    order: Arc<Vec<String>>,
    /// Generations held right now (streams and requests in flight).
    live: Arc<AtomicUsize>,
    routing: Arc<watch::Sender<Arc<Routing>>>,
    meter: Option<Meter>,
    rate_limits: Option<Arc<RateLimiting>>,
    answer_defaults: Arc<AnswerDefaults>,
    /// The embedding models (`crate::embeddings`).
    pub(crate) embedders: Arc<crate::embeddings::Embedders>,
    /// Projects' guardrails, read recently (`crate::guardrails`).
    pub(crate) guardrails: Arc<crate::guardrails::GuardrailCache>,
}

/// A local request to generate: its model, prompts and sampling.
pub struct LocalRequest<'a> {
    /// The engine, and the name the answer and the ledger carry.
    pub model: &'a ServedModel,
    /// The model name billed and answered as (an alias resolved).
    pub name: &'a str,
    /// Every prompt, as token ids.
    pub prompts: Vec<Vec<u32>>,
    /// Choices per prompt.
    pub n: u32,
    /// How each choice is sampled.
    pub settings: &'a Settings,
    /// The request field an engine refusal is about.
    pub param: &'static str,
}

/// How a chat request started.
pub enum ChatStart {
    /// On the local engine: the answer and its chunk format.
    Local(Answer, ChatChunks),
    /// Routed, streaming: the gateway's stream, the charge it settles, and
    /// the keeper of a `store: true` answer.
    Routed(GatewayStream, Option<Charge>, Option<ChunkKeeper>),
    /// A whole answer, already settled: a routed one, or any answer of a
    /// project that moderates output (checked before anything is sent; a
    /// stream replays it: [`crate::guardrails::replay`]).
    RoutedWhole(ChatCompletion),
}

impl Service {
    /// Serving `models` (name, engine), in that order. A name given twice
    /// keeps its first engine.
    pub fn new(models: impl IntoIterator<Item = (String, engine::EngineHandle)>) -> Self {
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
        let answer_defaults = Arc::new(AnswerDefaults::default());
        let routing = Routing::local_only(&map, &order, &live, &answer_defaults);
        Service {
            models: Arc::new(map),
            order: Arc::new(order),
            live,
            routing: Arc::new(watch::Sender::new(Arc::new(routing))),
            meter: None,
            rate_limits: None,
            answer_defaults,
            embedders: Arc::default(),
            guardrails: Arc::default(),
        }
    }

    /// Caps a choice whose request sets no `max_tokens` at `tokens` (`0`:
    /// it may fill the context), on the direct path and the gateway's local
    /// backends alike; a request's own `max_tokens` always wins.
    pub fn with_default_max_tokens(self, tokens: u32) -> Self {
        self.answer_defaults.set_max_tokens(tokens);
        self
    }

    /// Writes a thinking model's reasoning under `field` in chat answers
    /// (`reasoning_content` unless set).
    pub fn with_reasoning_field(self, field: crate::generation::reasoning::ReasoningField) -> Self {
        self.answer_defaults.set_reasoning_field(field);
        self
    }

    /// Routes chat models as `config` says (`[gateway]`), besides the local
    /// models it does not name; an unusable configuration is refused with
    /// the entry at fault.
    pub fn with_gateway(mut self, config: &GatewayConfig) -> Result<Self, gateway::ConfigError> {
        let routing = self.build_routing(config)?;
        self.routing = Arc::new(watch::Sender::new(Arc::new(routing)));
        Ok(self)
    }

    /// Replaces the routing with one built from `config`, for every clone;
    /// requests and streams already routed finish on the old one. An
    /// unusable configuration is refused and the old one kept.
    pub fn reload_gateway(&self, config: &GatewayConfig) -> Result<(), gateway::ConfigError> {
        let routing = self.build_routing(config)?;
        self.routing.send_replace(Arc::new(routing));
        Ok(())
    }

    /// The routing of `config` over this service's engines.
    fn build_routing(&self, config: &GatewayConfig) -> Result<Routing, gateway::ConfigError> {
        Routing::build(
            config,
            &self.models,
            &self.order,
            &self.live,
            &self.answer_defaults,
        )
    }

    /// Meters every request in `meter`'s ledger.
    pub fn with_meter(mut self, meter: Option<Meter>) -> Self {
        self.meter = meter;
        self
    }

    /// Limits every tenant's key and project (see [`crate::limits`]).
    pub fn with_rate_limits(mut self, limits: RateLimiting) -> Self {
        self.rate_limits = Some(Arc::new(limits));
        self
    }

    /// The routing now in force.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.borrow().clone()
    }

    /// The routing now in force, then each that replaces it.
    pub fn watch_routing(&self) -> watch::Receiver<Arc<Routing>> {
        self.routing.subscribe()
    }

    /// The per-answer defaults (`default_max_tokens`, the reasoning field).
    pub(crate) fn answer_defaults(&self) -> &AnswerDefaults {
        &self.answer_defaults
    }

    /// The ledger writer, when there is a store.
    pub fn meter(&self) -> Option<&Meter> {
        self.meter.as_ref()
    }

    /// The rate limits, when configured.
    pub fn rate_limits(&self) -> Option<&Arc<RateLimiting>> {
        self.rate_limits.as_ref()
    }

    /// The loaded models, in registration order.
    pub fn models(&self) -> impl Iterator<Item = &ServedModel> {
        self.order.iter().filter_map(|name| self.models.get(name))
    }

    /// How many generations are held right now. A client that leaves
    /// mid-stream drops its generations (cancelling them in the engine),
    /// so this falls back as soon as it is gone.
    pub fn live_generations(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// `asked` resolved for `tenant` (see [`Routing::resolve`]).
    pub fn resolve(&self, tenant: Option<&Tenant>, asked: &str) -> Result<Resolved> {
        Ok(self.routing().resolve(tenant, asked)?)
    }

    /// The local engine of an engine-only endpoint (tokenizing): the model
    /// `asked` for, else the first loaded one, resolved and checked like
    /// every endpoint's.
    pub fn engine_for(&self, tenant: Option<&Tenant>, asked: Option<&str>) -> Result<ServedModel> {
        let name = match asked {
            Some(asked) => asked,
            None => match self.order.first() {
                Some(first) => first.as_str(),
                None => {
                    return Err(api::ApiError::NotFound {
                        message: "No model is loaded on this server.".into(),
                    }
                    .into())
                }
            },
        };
        Ok(self.resolve(tenant, name)?.engine()?.clone())
    }

    /// Reserves a metered request (`Ok(None)` when unmetered): its
    /// tokens-per-minute estimate, then its worst case in the ledger.
    pub async fn begin_charge(
        &self,
        context: &RequestContext,
        model: &str,
        prompt_tokens: u64,
        max_completion_tokens: u64,
    ) -> Result<Option<Charge>> {
        self.begin_charge_priced(context, model, prompt_tokens, max_completion_tokens, None)
            .await
    }

    /// [`Service::begin_charge`] at `unlisted` prices when the store has
    /// none for `model` (`None`: the configured table's).
    pub async fn begin_charge_priced(
        &self,
        context: &RequestContext,
        model: &str,
        prompt_tokens: u64,
        max_completion_tokens: u64,
        unlisted: Option<billing::ModelPrices>,
    ) -> Result<Option<Charge>> {
        let (Some(meter), Some(tenant)) = (&self.meter, &context.tenant) else {
            return Ok(None);
        };
        let planned = Planned {
            request_id: &context.request_id,
            model,
            endpoint: &context.endpoint,
            prompt_tokens,
            max_completion_tokens,
            unlisted,
        };
        let charge = meter
            .begin(tenant, context.limits.as_deref(), planned)
            .await?;
        Ok(Some(charge))
    }

    /// Reserves and starts a local generation: `n` choices of every prompt.
    /// Without `max_tokens` a choice may fill the context, and is reserved
    /// so. An engine refusal releases the reservation.
    pub async fn start_local(
        &self,
        context: &RequestContext,
        request: LocalRequest<'_>,
    ) -> Result<Answer> {
        let engine = &request.model.engine;
        let prompt_tokens = request
            .prompts
            .iter()
            .fold(0u64, |sum, prompt| sum.saturating_add(prompt.len() as u64));
        let longest = request.prompts.iter().map(Vec::len).max().unwrap_or(0);
        let per_choice = request.settings.max_tokens.map_or_else(
            || engine.info().context_length.saturating_sub(longest) as u64,
            u64::from,
        );
        let choices = (request.prompts.len() as u64).saturating_mul(u64::from(request.n));
        let charge = self
            .begin_charge(
                context,
                request.name,
                prompt_tokens,
                per_choice.saturating_mul(choices),
            )
            .await?;
        match submit_all(
            &self.live,
            engine,
            &request.prompts,
            request.n,
            request.settings,
            request.param,
        ) {
            Ok(generations) => Ok(Answer::new(
                generations,
                u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
                request.n,
                charge,
            )),
            Err(err) => {
                if let Some(charge) = charge {
                    charge
                        .settle(Outcome::Refused, billing::Usage::default())
                        .written()
                        .await;
                }
                Err(err)
            }
        }
    }

    /// Starts a chat request for `context`; `sticky` keeps a conversation
    /// on the backend that served it last, and `timeout` bounds a routed
    /// whole answer.
    pub async fn chat(
        &self,
        context: &RequestContext,
        request: ChatCompletionRequest,
        sticky: Option<String>,
        timeout: Duration,
    ) -> Result<ChatStart> {
        // One snapshot of the routing for the whole request (a reload may
        // replace it meanwhile).
        let routing = self.routing();
        let resolved = routing.resolve(context.tenant.as_ref(), &request.model)?;
        self.check_input(context, crate::guardrails::chat_texts(&request))
            .await?;
        let moderated = self.guardrails_for(context).await.output;
        let keeper = Keeper::for_request(
            self.meter.as_ref().map(Meter::store),
            context.tenant.as_ref(),
            &request,
            &resolved.model,
        )?;
        let Some(model) = resolved.direct() else {
            let options = RouteOptions { sticky_key: sticky };
            if moderated {
                // Output moderation: the answer is fetched whole, checked,
                // then kept and answered (a stream replays it).
                let mut whole = request;
                whole.stream = Some(false);
                whole.stream_options = None;
                let start = self
                    .routed(
                        context,
                        &routing,
                        &resolved.model,
                        whole,
                        options,
                        timeout,
                        None,
                    )
                    .await?;
                let ChatStart::RoutedWhole(answer) = start else {
                    return Err(api::ApiError::Internal {
                        detail: "a whole routed answer came as a stream".into(),
                    }
                    .into());
                };
                return self.checked(context, answer, keeper).await;
            }
            return self
                .routed(
                    context,
                    &routing,
                    &resolved.model,
                    request,
                    options,
                    timeout,
                    keeper,
                )
                .await;
        };
        let (prompt, thinking) =
            local_chat::prompt_thinking(&model.engine, &resolved.model, &request).await?;
        let mut settings = local_chat::settings(&request, &self.answer_defaults)?;
        let plan = crate::generation::tools::plan(&model.engine, &request).await?;
        settings.constraint = plan.constraint();
        let local = LocalRequest {
            model,
            name: &resolved.model,
            prompts: vec![prompt],
            n: request.choice_count(),
            settings: &settings,
            param: local_chat::PARAM,
        };
        let answer = self.start_local(context, local).await?;
        let format = ChatChunks::new(
            resolved.model.clone(),
            request.include_usage(),
            settings.logprobs.is_some(),
            model.engine.tokenizer().clone(),
        )
        .reading_tools(plan.tools)
        .reasoning(thinking, self.answer_defaults.reasoning_field());
        if moderated {
            let whole = answer.collect_within(timeout).await?;
            let answer = format.completion(whole);
            return self.checked(context, answer, keeper).await;
        }
        Ok(ChatStart::Local(answer, format.keeping(keeper)))
    }

    /// A whole answer under output moderation: checked
    /// ([`Service::filter_output`]), then kept (`store: true`) as the
    /// client sees it.
    async fn checked(
        &self,
        context: &RequestContext,
        answer: ChatCompletion,
        keeper: Option<Keeper>,
    ) -> Result<ChatStart> {
        let answer = self.filter_output(context, answer).await?;
        if let Some(keeper) = &keeper {
            keeper.keep(&answer).await;
        }
        Ok(ChatStart::RoutedWhole(answer))
    }

    /// A chat request the gateway routes; `keeper` stores the answer
    /// (`store: true`): a whole one here, a stream through its relay.
    #[allow(clippy::too_many_arguments)]
    async fn routed(
        &self,
        context: &RequestContext,
        routing: &Routing,
        model: &str,
        request: ChatCompletionRequest,
        options: RouteOptions,
        timeout: Duration,
        keeper: Option<Keeper>,
    ) -> Result<ChatStart> {
        let prompt_estimate = gateway::estimate_prompt_tokens(&request);
        let per_choice = request
            .max_output_tokens()
            .map_or(REMOTE_DEFAULT_MAX_TOKENS, u64::from);
        let mut charge = self
            .begin_charge(
                context,
                model,
                u64::from(prompt_estimate),
                per_choice.saturating_mul(u64::from(request.choice_count())),
            )
            .await?;
        let gateway = routing.gateway.clone();
        let reply = if request.is_stream() {
            gateway.chat(request, options).await.map_err(Into::into)
        } else {
            match tokio::time::timeout(timeout, gateway.chat(request, options)).await {
                Ok(reply) => reply.map_err(Into::into),
                Err(_) => Err(crate::Error::from(api::ApiError::Timeout {
                    after_secs: timeout.as_secs(),
                })),
            }
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                // Nothing was served: nothing is billed.
                if let Some(charge) = charge.take() {
                    charge
                        .settle(Outcome::Refused, billing::Usage::default())
                        .written()
                        .await;
                }
                return Err(err);
            }
        };
        match reply {
            GatewayReply::Stream(stream, served) => {
                if let Some(charge) = charge.as_mut() {
                    charge.served_by(&served.model, &served.backend).await;
                }
                Ok(ChatStart::Routed(
                    stream,
                    charge,
                    keeper.map(Keeper::chunks),
                ))
            }
            GatewayReply::Whole(answer, served) => {
                if let Some(mut charge) = charge {
                    charge.served_by(&served.model, &served.backend).await;
                    let used = match &answer.usage {
                        Some(usage) => billed(usage),
                        None => billing::Usage {
                            prompt_tokens: u64::from(prompt_estimate),
                            cached_tokens: 0,
                            completion_tokens: estimate_completion(&answer),
                        },
                    };
                    let reason = answer.choices.first().map(|c| c.finish_reason);
                    // Written on the meter's task (awaited at shutdown), so
                    // the answer does not wait for the ledger.
                    drop(charge.settle(Outcome::Finished(reason), used));
                }
                if let Some(keeper) = &keeper {
                    keeper.keep(&answer).await;
                }
                Ok(ChatStart::RoutedWhole(answer))
            }
        }
    }
}

/// Completion tokens of an answer whose upstream gave no usage: its text
/// at four characters a token.
fn estimate_completion(answer: &ChatCompletion) -> u64 {
    let chars: usize = answer
        .choices
        .iter()
        .filter_map(|c| c.message.content.as_ref())
        .map(|text| text.chars().count())
        .sum();
    chars.div_ceil(4) as u64
}
