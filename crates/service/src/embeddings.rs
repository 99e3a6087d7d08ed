//! `POST /v1/embeddings` as a use case: the embedding models this server
//! runs ([`Embedders`]: each an encoder thread, under its catalog name and
//! any aliases), and [`Service::embeddings`] — resolve the model, tokenize
//! every input off the executor with the model's own tokenizer, refuse
//! what does not fit (never truncate), reserve the prompt tokens, run all
//! inputs as one batch, settle, answer.
//!
//! An embedding is billed as prompt tokens only, at the model's input price
//! (the same price table as chat: the store's, else the configured one); a
//! request refused before the model ran is billed nothing.
//!
//! A model that no local embedder serves but the gateway routes to remote
//! backends (`[gateway]`: an `openai` backend) is answered upstream
//! ([`gateway::Gateway::embeddings`]: retries, failover, fallbacks as for
//! chat), reserved with an estimate (four characters a token) and settled
//! for the backend and model that served, with the upstream's
//! `usage.prompt_tokens`. The upstream is always asked for floats; the
//! answer is written in the format the client asked for.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::{
    ApiError, EmbeddingItem, EmbeddingList, EmbeddingRequest, EmbeddingVector, EncodingFormat,
    InvalidCode,
};
use encoder::{EncoderError, EncoderHandle};

use crate::metering::Outcome;
use crate::{RequestContext, Result, Service};

/// The embedding models served, by name, with their aliases.
#[derive(Clone, Default)]
pub struct Embedders {
    models: BTreeMap<String, EncoderHandle>,
    aliases: BTreeMap<String, String>,
    /// The first model added (moderation's classifier runs on it).
    first: Option<EncoderHandle>,
    /// The moderation classifier, built on first use.
    pub(crate) moderator: Arc<crate::moderation::Moderator>,
}

impl Embedders {
    /// Serves `handle` as `name`; a name given twice keeps its first model.
    pub fn add(&mut self, name: impl Into<String>, handle: EncoderHandle) {
        self.first.get_or_insert_with(|| handle.clone());
        self.models.entry(name.into()).or_insert(handle);
    }

    /// The first model added.
    pub fn first(&self) -> Option<&EncoderHandle> {
        self.first.as_ref()
    }

    /// Answers to `alias` with model `model` (which must be added).
    pub fn alias(&mut self, alias: impl Into<String>, model: impl Into<String>) {
        self.aliases.insert(alias.into(), model.into());
    }

    /// The served names and aliases, each with the model it resolves to.
    pub fn names(&self) -> Vec<(String, String)> {
        self.models
            .keys()
            .map(|m| (m.clone(), m.clone()))
            .chain(
                self.aliases
                    .iter()
                    .filter(|(_, m)| self.models.contains_key(*m))
                    .map(|(a, m)| (a.clone(), m.clone())),
            )
            .collect()
    }

    /// Whether nothing is served.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// `asked` (a name or an alias) → (model name, handle).
    pub fn resolve(&self, asked: &str) -> Option<(&str, &EncoderHandle)> {
        let name = self.aliases.get(asked).map_or(asked, String::as_str);
        self.models
            .get_key_value(name)
            .map(|(n, h)| (n.as_str(), h))
    }
}

impl Service {
    /// Serves the embedding models of `embedders`.
    pub fn with_embedders(mut self, embedders: Embedders) -> Self {
        self.embedders = Arc::new(embedders);
        self
    }

    /// The embedding models served.
    pub fn embedders(&self) -> &Embedders {
        &self.embedders
    }

    /// Embeds every input of `request` for `context`.
    pub async fn embeddings(
        &self,
        context: &RequestContext,
        request: EmbeddingRequest,
    ) -> Result<EmbeddingList> {
        let not_found = || ApiError::ModelNotFound {
            model: request.model.clone(),
        };
        if self.guardrails_for(context).await.input {
            let texts = crate::guardrails::embedding_texts(&request)?;
            self.check_input_at(context, texts, "input").await?;
        }
        let Some((name, handle)) = self.embedders.resolve(&request.model) else {
            let routing = self.routing();
            return match routing.resolve(context.tenant.as_ref(), &request.model) {
                // A chat model served by one local engine cannot embed.
                Ok(resolved) if resolved.direct().is_none() => {
                    self.routed_embeddings(context, &routing, resolved.model, request)
                        .await
                }
                _ => Err(not_found().into()),
            };
        };
        if let Some(tenant) = &context.tenant {
            if !tenant.may_use(&request.model) && !tenant.may_use(name) {
                return Err(not_found().into());
            }
        }
        let (name, handle) = (name.to_owned(), handle.clone());
        if let Some(d) = request.dimensions {
            if usize::try_from(d).ok() != Some(handle.dimensions()) {
                return Err(ApiError::invalid(
                    "dimensions",
                    InvalidCode::InvalidValue,
                    format!(
                        "`{name}` writes {}-dimensional vectors and cannot shorten them: \
                         leave `dimensions` unset or set it to {}.",
                        handle.dimensions(),
                        handle.dimensions()
                    ),
                )
                .into());
            }
        }
        let format = request.format();
        let tokenizer = handle.clone();
        let seqs = tokio::task::spawn_blocking(move || tokenize(&tokenizer, &request)).await??;
        let prompt_tokens: u64 = seqs.iter().map(|s| s.len() as u64).sum();
        let charge = self.begin_charge(context, &name, prompt_tokens, 0).await?;
        let run = handle.clone();
        let result = tokio::task::spawn_blocking(move || run.embed(seqs)).await;
        let used = billing::Usage {
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens: 0,
        };
        let vectors = match result {
            Ok(Ok(vectors)) => vectors,
            Ok(Err(err)) => {
                if let Some(charge) = charge {
                    let outcome = match err {
                        EncoderError::Overloaded => Outcome::Refused,
                        _ => Outcome::Failed,
                    };
                    charge
                        .settle(outcome, billing::Usage::default())
                        .written()
                        .await;
                }
                return Err(err.into());
            }
            Err(join) => {
                if let Some(charge) = charge {
                    charge
                        .settle(Outcome::Failed, billing::Usage::default())
                        .written()
                        .await;
                }
                return Err(join.into());
            }
        };
        if let Some(charge) = charge {
            charge.settle(Outcome::Finished(None), used).written().await;
        }
        let tokens = u32::try_from(prompt_tokens).unwrap_or(u32::MAX);
        Ok(EmbeddingList::new(name, &vectors, format, tokens))
    }
}

impl Service {
    /// Embeds `request` on the remote backends of gateway model `model`.
    async fn routed_embeddings(
        &self,
        context: &RequestContext,
        routing: &crate::Routing,
        model: String,
        mut request: EmbeddingRequest,
    ) -> Result<EmbeddingList> {
        let format = request.format();
        request.encoding_format = Some("float".to_owned());
        let estimate: u64 = request
            .input
            .items()
            .iter()
            .map(|item| match item {
                EmbeddingItem::Text(text) => text.chars().count().div_ceil(4) as u64,
                EmbeddingItem::Tokens(ids) => ids.len() as u64,
            })
            .sum();
        let mut charge = self.begin_charge(context, &model, estimate, 0).await?;
        let (mut list, served) = match routing.gateway.embeddings(request).await {
            Ok(answer) => answer,
            Err(err) => {
                // Nothing was served: nothing is billed.
                if let Some(charge) = charge.take() {
                    charge
                        .settle(Outcome::Refused, billing::Usage::default())
                        .written()
                        .await;
                }
                return Err(err.into());
            }
        };
        if let Some(mut charge) = charge {
            charge.served_by(&served.model, &served.backend).await;
            let used = billing::Usage {
                prompt_tokens: u64::from(list.usage.prompt_tokens),
                cached_tokens: 0,
                completion_tokens: 0,
            };
            charge.settle(Outcome::Finished(None), used).written().await;
        }
        if format == EncodingFormat::Base64 {
            for item in &mut list.data {
                if let EmbeddingVector::Float(v) = &item.embedding {
                    item.embedding = EmbeddingVector::encode(v, format);
                }
            }
        }
        Ok(list)
    }
}

/// Every input as `[CLS] … [SEP]` ids, refusing one longer than the
/// model's context or holding an id outside its vocabulary (400, naming
/// the input).
fn tokenize(handle: &EncoderHandle, request: &EmbeddingRequest) -> Result<Vec<Vec<u32>>> {
    let items = request.input.items();
    let several = items.len() > 1
        || matches!(
            request.input,
            api::EmbeddingInput::Texts(_) | api::EmbeddingInput::TokenLists(_)
        );
    let tokenizer = handle.tokenizer();
    let mut seqs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let ids = match item {
            EmbeddingItem::Text(text) => tokenizer.encode(text),
            EmbeddingItem::Tokens(ids) => tokenizer.wrap_ids(ids),
        };
        let param = if several {
            format!("input[{i}]")
        } else {
            "input".to_owned()
        };
        if ids.len() > handle.max_tokens() {
            return Err(ApiError::invalid(
                param,
                InvalidCode::InvalidValue,
                format!(
                    "This model's maximum input length is {} tokens (with [CLS] and [SEP]); \
                     input {i} has {} tokens. Shorten or split it: inputs are never truncated.",
                    handle.max_tokens(),
                    ids.len()
                ),
            )
            .into());
        }
        if let Err(err) = handle.check(std::slice::from_ref(&ids)) {
            return Err(
                ApiError::invalid(param, InvalidCode::InvalidValue, err.to_string()).into(),
            );
        }
        seqs.push(ids);
    }
    Ok(seqs)
}
