//! `POST /v1/moderations` as a use case: the local classifier
//! ([`classifier`]) on the first embedding model served, metered like every
//! request — a ledger row with the endpoint `/v1/moderations`, the model
//! named as asked (`omni-moderation-latest` by default) and the tokens the
//! classifier read (the embedding model's own tokenizer, `[CLS]`/`[SEP]`
//! included, long texts cut at the model's context as they are classified).
//! Moderation is free by default, as OpenAI's is: its rows cost nothing
//! unless the store prices the model (`parlance prices set
//! omni-moderation-latest …`); usage still counts them
//! (`/v1/organization/usage/moderations`). A request refused before the
//! classifier ran is billed nothing.
//!
//! An upstream instead: when the gateway routes the model asked for
//! (`omni-moderation-latest` unless named) to remote backends — a
//! `[gateway]` model of that name with an `openai` backend — the request
//! is answered there ([`gateway::Gateway::moderations`]: retries and
//! failover as for chat), metered the same way for the backend that
//! served, its tokens counted with the local embedding model's tokenizer
//! when one is loaded, else estimated at four characters a token (the
//! moderation API reports no usage).

mod classifier;
mod patterns;

pub use classifier::{Classifier, Moderator, Prepared, THRESHOLD};

use api::{ApiError, Moderation, ModerationRequest, ModerationResult};
use billing::{ModelPrices, Money};
use encoder::{EncoderError, EncoderHandle};

use crate::metering::Outcome;
use crate::{RequestContext, Result, Service};

/// What a moderation costs when the store sets no price for its model.
pub fn free() -> ModelPrices {
    ModelPrices::new(Money::ZERO, Money::ZERO)
}

/// Whether `model` names a moderation model this server answers locally.
pub fn is_moderation_model(model: &str) -> bool {
    model.starts_with("omni-moderation") || model.starts_with("text-moderation")
}

impl Service {
    /// Classifies every input of `request` with the local classifier,
    /// metered for `context`.
    pub async fn moderations(
        &self,
        context: &RequestContext,
        request: ModerationRequest,
    ) -> Result<Moderation> {
        let routing = self.routing();
        if let Ok(resolved) = routing.resolve(context.tenant.as_ref(), request.model_name()) {
            if resolved.direct().is_none() {
                return self
                    .routed_moderations(context, &routing, resolved.model, request)
                    .await;
            }
        }
        if let Some(model) = &request.model {
            if !is_moderation_model(model) {
                return Err(ApiError::ModelNotFound {
                    model: model.clone(),
                }
                .into());
            }
        }
        let handle = self.moderation_encoder()?;
        let model = request.model_name().to_owned();
        let moderator = self.embedders.moderator.clone();
        let texts = request.texts();
        let prepared =
            tokio::task::spawn_blocking(move || moderator.prepare(&handle, texts)).await??;
        let tokens = prepared.tokens();
        let charge = self
            .begin_charge_priced(context, &model, tokens, 0, Some(free()))
            .await?;
        let ran = tokio::task::spawn_blocking(move || prepared.run()).await;
        let results = settle_run(charge, ran, tokens).await?;
        Ok(Moderation {
            id: format!("modr-{}", crate::random_hex()),
            model,
            results,
        })
    }

    /// Classifies `request` on the remote backends of gateway model `model`.
    async fn routed_moderations(
        &self,
        context: &RequestContext,
        routing: &crate::Routing,
        model: String,
        request: ModerationRequest,
    ) -> Result<Moderation> {
        let texts = request.texts();
        let tokens = match self.embedders.first() {
            Some(handle) => {
                let handle = handle.clone();
                tokio::task::spawn_blocking(move || {
                    texts
                        .iter()
                        .map(|t| handle.tokenizer().encode(t).len() as u64)
                        .sum::<u64>()
                })
                .await?
            }
            None => texts
                .iter()
                .map(|t| t.chars().count().div_ceil(4) as u64)
                .sum(),
        };
        let mut charge = self
            .begin_charge_priced(context, &model, tokens, 0, Some(free()))
            .await?;
        match routing.gateway.moderations(&model, request).await {
            Ok((answer, served)) => {
                if let Some(mut charge) = charge {
                    charge.served_by(&served.model, &served.backend).await;
                    let used = billing::Usage {
                        prompt_tokens: tokens,
                        cached_tokens: 0,
                        completion_tokens: 0,
                    };
                    charge.settle(Outcome::Finished(None), used).written().await;
                }
                Ok(answer)
            }
            Err(err) => {
                if let Some(charge) = charge.take() {
                    charge
                        .settle(Outcome::Refused, billing::Usage::default())
                        .written()
                        .await;
                }
                Err(err.into())
            }
        }
    }

    /// Classifies `texts` with the local classifier, unmetered (a
    /// project's guardrails run inside a request that is metered itself).
    pub async fn classify(&self, texts: Vec<String>) -> Result<Vec<ModerationResult>> {
        let handle = self.moderation_encoder()?;
        let moderator = self.embedders.moderator.clone();
        Ok(tokio::task::spawn_blocking(move || moderator.prepare(&handle, texts)?.run()).await??)
    }

    /// The embedding model the local classifier runs on.
    fn moderation_encoder(&self) -> Result<EncoderHandle> {
        match self.embedders.first() {
            Some(handle) => Ok(handle.clone()),
            None => Err(ApiError::NotFound {
                message: "Moderation needs an embedding model: start the server with \
                          --embedding-model all-minilm-l6-v2."
                    .into(),
            }
            .into()),
        }
    }
}

/// Settles `charge` for a classifier run: `tokens` when it answered,
/// nothing when it failed (refused when the encoder was overloaded).
async fn settle_run(
    charge: Option<crate::Charge>,
    ran: std::result::Result<
        std::result::Result<Vec<ModerationResult>, EncoderError>,
        tokio::task::JoinError,
    >,
    tokens: u64,
) -> Result<Vec<ModerationResult>> {
    let (outcome, used) = match &ran {
        Ok(Ok(_)) => (
            Outcome::Finished(None),
            billing::Usage {
                prompt_tokens: tokens,
                cached_tokens: 0,
                completion_tokens: 0,
            },
        ),
        Ok(Err(EncoderError::Overloaded)) => (Outcome::Refused, billing::Usage::default()),
        _ => (Outcome::Failed, billing::Usage::default()),
    };
    if let Some(charge) = charge {
        charge.settle(outcome, used).written().await;
    }
    Ok(ran??)
}
