//! `EngineHandle`, the engine's public face: loads a model, starts its
//! thread, renders chat prompts, tokenizes, and accepts generations whose
//! events stream back over a channel per request. Dropping a `Generation`
//! cancels it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::EngineError;
use crate::model::{Model, ModelConfig};
use crate::request::{Event, FinishReason, GenerateRequest, Usage};
use crate::scheduler::{Command, Scheduler};
use crate::sequence::Sequence;
use crate::stats::{Counters, EngineStats};

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads for the forward pass (0: one per physical core).
    pub threads: usize,
    /// Longest sequence (prompt + generated) one request may hold; 0: the model's own.
    pub context_length: usize,
    /// Positions the KV cache holds across all sequences; 0: twice the context length.
    pub kv_cache_tokens: usize,
    /// Most tokens one forward pass processes (prompt chunking).
    pub step_tokens: usize,
    /// While sequences are generating, a step may last at most this many
    /// times a step of their decode rows alone: prompt tokens beyond that
    /// wait for the next steps (chunked prefill between the streams'
    /// tokens). 1 or less: no bound (a step takes up to `step_tokens`).
    pub prefill_stall_ratio: f64,
    /// Requests that may wait for the engine before new ones are refused.
    pub queue_capacity: usize,
    /// Keep computed full KV blocks after a request ends and reuse them for
    /// later requests that start with the same tokens (a shared system
    /// prompt, a conversation's history). Cached blocks are evicted least
    /// recently used first; the KV budget stays `kv_cache_tokens`.
    pub prefix_cache: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threads: 0,
            context_length: 8192,
            kv_cache_tokens: 0,
            step_tokens: 512,
            prefill_stall_ratio: 1.5,
            queue_capacity: 256,
            prefix_cache: true,
        }
    }
}

/// What a loaded model is.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub config: ModelConfig,
    /// Context length requests are held to.
    pub context_length: usize,
    pub has_chat_template: bool,
}

/// A running engine for one model. Cheap to clone; the engine thread stops
/// when the last clone is dropped and its work is done.
#[derive(Clone)]
pub struct EngineHandle {
    tx: SyncSender<Command>,
    tokenizer: Arc<Tokenizer>,
    template: Option<Arc<ChatTemplate>>,
    /// The template's source (the GGUF's, or the override's).
    template_source: Option<Arc<str>>,
    info: Arc<ModelInfo>,
    next_id: Arc<AtomicU64>,
    counters: Arc<Counters>,
}

/// The stream of one generation's events. Dropping it cancels the generation.
pub struct Generation {
    rx: UnboundedReceiver<Event>,
}

impl Generation {
    /// The next event, or `None` once `Done`/`Failed` was delivered.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Blocking form of [`Generation::next`], for threads outside an async runtime.
    pub fn next_blocking(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }
}

impl EngineHandle {
    /// Loads the model at `path` and starts its engine thread.
    pub fn start(path: &Path, config: EngineConfig) -> Result<Self, EngineError> {
        let model = Model::load_for_context(path, config.context_length)?;
        let tokenizer = Arc::new(Tokenizer::from_gguf(model.file())?);
        let template = match tokenizer.chat_template() {
            Some(src) => Some(Arc::new(
                ChatTemplate::new(
                    src,
                    tokenizer.bos_token().unwrap_or(""),
                    tokenizer.eos_token().unwrap_or(""),
                )
                .map_err(|e| EngineError::Template(e.to_string()))?,
            )),
            None => None,
        };
        let mcfg = model.config().clone();
        let context_length = mcfg.n_ctx;
        let kv_tokens = match config.kv_cache_tokens {
            0 => 2 * context_length,
            n => n,
        };
        let threads = match config.threads {
            0 => kernels::default_threads(),
            n => n,
        };
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let sched = Scheduler::new(
            model,
            tokenizer.clone(),
            threads,
            kv_tokens,
            config.step_tokens,
            config.prefix_cache,
            counters.clone(),
        )
        .with_pacing(config.prefill_stall_ratio);
        std::thread::Builder::new()
            .name("parlance-engine".into())
            .spawn(move || sched.run(rx))
            .map_err(|e| EngineError::Model(format!("cannot start the engine thread: {e}")))?;
        Ok(EngineHandle {
            tx,
            info: Arc::new(ModelInfo {
                config: mcfg,
                context_length,
                has_chat_template: template.is_some(),
            }),
            template_source: tokenizer.chat_template().map(Arc::from),
            tokenizer,
            template,
            next_id: Arc::new(AtomicU64::new(1)),
            counters,
        })
    }

    /// The engine's counters as of its last step.
    pub fn stats(&self) -> EngineStats {
        self.counters.snapshot()
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// This engine with `source` as its chat template instead of the GGUF's
    /// (`parlance serve --chat-template FILE`); a template that does not
    /// compile is an error naming why.
    pub fn with_chat_template(mut self, source: &str) -> Result<Self, EngineError> {
        let template = ChatTemplate::new(
            source,
            self.tokenizer.bos_token().unwrap_or(""),
            self.tokenizer.eos_token().unwrap_or(""),
        )
        .map_err(|e| EngineError::Template(e.to_string()))?;
        self.template = Some(Arc::new(template));
        self.template_source = Some(Arc::from(source));
        let mut info = (*self.info).clone();
        info.has_chat_template = true;
        self.info = Arc::new(info);
        Ok(self)
    }

    /// The chat template's source, if the model has one.
    pub fn chat_template_source(&self) -> Option<&str> {
        self.template_source.as_deref()
    }

    /// Renders `messages` with the chat template, `enable_thinking` set
    /// for templates that read it (`None`: left undefined).
    pub fn render_chat_thinking(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        enable_thinking: Option<bool>,
    ) -> Result<String, EngineError> {
        let t = self.template.as_ref().ok_or_else(|| {
            EngineError::NoChatTemplate(
                "this model has no chat template; use plain completions instead".into(),
            )
        })?;
        t.render_thinking(messages, add_generation_prompt, enable_thinking)
            .map_err(|e| EngineError::Template(e.to_string()))
    }

    /// The compiled chat template, if the model has one: for renderings
    /// the methods here do not cover (`ChatTemplate::render_with`, which
    /// takes tool calls and the `tools` variable).
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_deref()
    }

    /// Renders `messages` with the model's own chat template.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        let t = self.template.as_ref().ok_or_else(|| {
            EngineError::NoChatTemplate(
                "this model has no chat template; use plain completions instead".into(),
            )
        })?;
        t.render(messages, add_generation_prompt)
            .map_err(|e| EngineError::Template(e.to_string()))
    }

    /// Tokenizes text as a prompt (the model's BOS added when it wants one,
    /// special-token text parsed as those tokens).
    pub fn encode_prompt(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, true, true)
    }

    /// A generation of no tokens: `Done` with reason `Length` at once.
    fn nothing_to_generate(prompt_tokens: usize) -> Generation {
        let (etx, erx) = unbounded_channel();
        let done = Event::Done {
            text: String::new(),
            reason: FinishReason::Length,
            usage: Usage {
                prompt_tokens,
                completion_tokens: 0,
                cached_tokens: 0,
            },
            stop: None,
        };
        // The receiver is held just below, so this send cannot fail.
        let _ = etx.send(done);
        Generation { rx: erx }
    }

    /// Validates `req` and queues it; events stream back on the returned `Generation`.
    pub fn submit(&self, mut req: GenerateRequest) -> Result<Generation, EngineError> {
        req.params.validate()?;
        let n_vocab = self.info.config.n_vocab;
        let n_ctx = self.info.context_length;
        if req.prompt.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        if let Some(&bad) = req.prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(EngineError::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary (size {n_vocab})"
            )));
        }
        let requested = req.max_tokens.unwrap_or(1);
        if req.prompt.len() + requested > n_ctx {
            return Err(EngineError::ContextLengthExceeded {
                prompt: req.prompt.len(),
                requested,
                n_ctx,
            });
        }
        if let Some((id, _)) = req
            .params
            .logit_bias
            .iter()
            .find(|(id, _)| *id as usize >= n_vocab)
        {
            return Err(EngineError::InvalidRequest(format!(
                "logit_bias names token {id}, outside the vocabulary"
            )));
        }
        if req.max_tokens == Some(0) {
            // Nothing to generate (a legacy completion scoring or echoing
            // its prompt): the prompt is counted, not run, and the answer
            // ends at once at its length limit.
            return Ok(Self::nothing_to_generate(req.prompt.len()));
        }
        let limit = req.prompt.len() + req.max_tokens.unwrap_or(n_ctx - req.prompt.len());
        let (etx, erx) = unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        req.stop.retain(|s| !s.is_empty());
        let seq = Sequence::new(id, req, n_vocab, limit, etx);
        match self.tx.try_send(Command::Submit(Box::new(seq))) {
            Ok(()) => Ok(Generation { rx: erx }),
            Err(TrySendError::Full(_)) => Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Stopped),
        }
    }
}
