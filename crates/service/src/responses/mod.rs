//! The Responses API's use cases: create (whole, streamed, or in the
//! background), retrieve, delete, list a response's input items, cancel.
//!
//! A Responses turn is run as the chat request it means
//! ([`convert::chat_request`]: instructions, the chained conversation, this
//! turn's items, tools and `text.format` on chat's own types) through
//! [`Service::chat`] — the one request path: the same model resolution,
//! reservation, rate limits, budgets, generation, tool parsing and
//! settlement as chat. Its answer is written as the Responses object or
//! its typed events ([`events`]).
//!
//! State lives in the store ([`store::StoredResponse`], scoped to the
//! caller's organisation and project): a response with `store` (the
//! default) is written once it has ended — never for a refused request —
//! with this turn's input items and the whole conversation it was
//! generated from, which a later turn's `previous_response_id` continues
//! (so a chained turn's prompt, and its bill, hold the whole history).
//! `background: true` stores the response `queued` at once and runs it
//! detached; `cancel` asks its runner to stop. A server without a store
//! keeps nothing: retrieving is a 404, and `previous_response_id` and
//! `background` are refused.

pub mod convert;
pub mod events;
pub mod replay;
mod truncate;

use std::time::Duration;

use api::{
    ApiError, CreateResponseRequest, DeletedResponse, InvalidCode, Item, ItemList, ResponseEvent,
    ResponseObject,
};
use store::{NewStoredResponse, Store};

use crate::chat_blocks::RoutedBlocks;
use crate::requests::{ChatStart, RequestContext, Service};
use crate::Result;

pub use events::{ResponseEvents, ResponseWriter};

/// How often a background response's runner looks for a cancel request.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// The most input items one page lists.
pub const MAX_ITEMS_PAGE: usize = 100;

/// How a create request started.
pub enum ResponseStart {
    /// Streamed from the local engine: the answer and its event writer.
    Stream(Box<(crate::generation::Answer, ResponseEvents)>),
    /// Streamed from a routed model: the gateway's stream and its writer.
    Routed(Box<RoutedBlocks<ResponseWriter>>),
    /// Streamed, but the answer came whole: every event at once.
    Events(Vec<ResponseEvent>),
    /// The whole response (stored if asked; `queued` for a background one).
    Whole(Box<ResponseObject>),
}

/// Where a finished response is stored: the store, its owner, and what it
/// keeps besides the object.
#[derive(Clone)]
pub struct Keep {
    store: Store,
    org_id: String,
    project_id: String,
    previous_response_id: Option<String>,
    input_items: String,
    context: String,
    /// Already written (`queued`): update it rather than create it.
    created: bool,
    /// The instance running it in the background, for the lease sweep
    /// ([`crate::instances`]); `None` for a response written whole.
    owner: Option<String>,
}

impl Keep {
    /// Writes `object` as the stored response; a failure is logged (the
    /// answer was already given).
    pub async fn write(&self, object: &ResponseObject) {
        if let Err(err) = self.try_write(object).await {
            tracing::error!(id = %object.id, error = %err, "storing a response failed");
        }
    }

    async fn try_write(&self, object: &ResponseObject) -> Result<()> {
        let json = serde_json::to_string(object).map_err(|err| ApiError::Internal {
            detail: err.to_string(),
        })?;
        if self.created {
            let moved = self
                .store
                .update_response(
                    &self.org_id,
                    &self.project_id,
                    &object.id,
                    &object.status,
                    &json,
                    None,
                )
                .await?;
            if !moved {
                // Ended elsewhere first: its instance's lease expired while
                // it stalled and the sweep failed it, or it was cancelled.
                tracing::warn!(id = %object.id, status = %object.status,
                    "the background response had already ended; this result is dropped");
            }
        } else {
            let new = NewStoredResponse {
                id: object.id.clone(),
                previous_response_id: self.previous_response_id.clone(),
                status: object.status.clone(),
                response: json,
                input_items: self.input_items.clone(),
                context: self.context.clone(),
                owner: self.owner.clone(),
            };
            self.store
                .create_response(&self.org_id, &self.project_id, &new)
                .await?;
        }
        Ok(())
    }
}

/// The error a background response gets when its instance died under it.
pub const SERVER_RESTARTED: &str = "The server running this background response stopped \
     (it crashed or restarted) before the response finished. Create the response again.";

/// Ends `failed` (error `server_error`, [`SERVER_RESTARTED`]) every
/// background response still `queued` or `in_progress` whose instance's
/// lease expired at `now` (see [`Store::orphaned_responses`]), so a client
/// polling it gets an answer; returns how many. Run by the lease sweep.
pub(crate) async fn fail_orphaned(store: &Store, now: i64) -> store::Result<usize> {
    let mut failed = 0;
    for stored in store.orphaned_responses(now).await? {
        let Some(owner) = stored.owner.as_deref() else {
            continue;
        };
        let mut object: serde_json::Value =
            serde_json::from_str(&stored.response).unwrap_or(serde_json::Value::Null);
        if !object.is_object() {
            object = serde_json::json!({"id": stored.id, "object": "response"});
        }
        object["status"] = "failed".into();
        object["error"] = serde_json::json!({"code": "server_error", "message": SERVER_RESTARTED});
        if store
            .fail_orphaned_response(&stored.org_id, &stored.id, owner, &object.to_string())
            .await?
        {
            failed += 1;
            tracing::warn!(id = %stored.id, owner, "failed a background response whose instance is gone");
        }
    }
    Ok(failed)
}

/// `GET …/input_items` paging: `after` an item id, `limit` (1–100, default
/// 20), `order` `desc` (default) or `asc`.
#[derive(Debug, Clone, Default)]
pub struct ItemsPage {
    /// List after this item id.
    pub after: Option<String>,
    /// How many.
    pub limit: Option<i64>,
    /// `asc` or `desc`.
    pub order: Option<String>,
}

fn not_found(id: &str) -> crate::Error {
    ApiError::NotFound {
        message: format!("Response with id '{id}' not found."),
    }
    .into()
}

fn internal(err: impl std::fmt::Display) -> crate::Error {
    ApiError::Internal {
        detail: err.to_string(),
    }
    .into()
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(internal)
}

impl Service {
    /// The store and the caller's organisation and project, when both
    /// exist.
    fn response_owner(&self, context: &RequestContext) -> Option<(Store, String, String)> {
        let store = self.meter()?.store().clone();
        let tenant = context.tenant.as_ref()?;
        Some((store, tenant.org_id.clone(), tenant.project_id.clone()))
    }

    /// A stored response of the caller's, or a 404.
    async fn stored_response(
        &self,
        context: &RequestContext,
        id: &str,
    ) -> Result<store::StoredResponse> {
        let Some((store, org, project)) = self.response_owner(context) else {
            return Err(not_found(id));
        };
        match store.get_response(&org, &project, id).await {
            Ok(stored) => Ok(stored),
            Err(err) if err.kind() == store::ErrorKind::NotFound => Err(not_found(id)),
            Err(err) => Err(err.into()),
        }
    }

    /// `POST /v1/responses`.
    pub async fn create_response(
        &self,
        context: &RequestContext,
        request: CreateResponseRequest,
        timeout: Duration,
    ) -> Result<ResponseStart> {
        let mut items = request.input_items()?;
        Item::assign_ids(&mut items, |prefix| {
            format!("{prefix}_{}", crate::random_hex())
        });
        let owner = self.response_owner(context);
        if owner.is_none() && request.is_background() {
            return Err(ApiError::invalid(
                "background",
                InvalidCode::InvalidValue,
                "Background responses need a store, and this server runs without one.",
            )
            .into());
        }
        let history = match &request.previous_response_id {
            Some(previous) => self.history_of(context, previous).await?,
            None => Vec::new(),
        };
        api::check_call_ids(&history, &items)?;
        let chat = self
            .fitted_chat(context, &request, &history, &items)
            .await?;
        let id = format!("resp_{}", crate::random_hex());
        let keep = match (&owner, request.is_stored()) {
            (Some((store, org, project)), true) => {
                let mut context_items = history;
                context_items.extend(items.iter().cloned());
                Some(Keep {
                    store: store.clone(),
                    org_id: org.clone(),
                    project_id: project.clone(),
                    previous_response_id: request.previous_response_id.clone(),
                    input_items: to_json(&items)?,
                    context: to_json(&context_items)?,
                    created: false,
                    owner: None,
                })
            }
            _ => None,
        };
        let started = self.chat(context, chat, None, timeout).await?;
        let resolved_model = match &started {
            ChatStart::Local(_, chunks) => chunks.model.clone(),
            ChatStart::RoutedWhole(completion) => completion.model.clone(),
            ChatStart::Routed(..) => request.model.clone(),
        };
        let object = convert::base_object(&id, &request, &resolved_model, "in_progress");
        if request.is_background() {
            return self.run_background(started, object, keep, timeout).await;
        }
        match started {
            ChatStart::Local(answer, chunks) if request.is_stream() => {
                let writer = ResponseWriter::new(object).keeping(keep);
                Ok(ResponseStart::Stream(Box::new((
                    answer,
                    ResponseEvents::new(chunks, writer),
                ))))
            }
            ChatStart::Local(answer, chunks) => {
                let whole = answer.collect_within(timeout).await?;
                let completion = chunks.completion(whole);
                let mut writer = ResponseWriter::new(object);
                writer.whole(&completion);
                let object = writer.object().clone();
                if let Some(keep) = keep {
                    keep.write(&object).await;
                }
                Ok(ResponseStart::Whole(Box::new(object)))
            }
            ChatStart::RoutedWhole(completion) => {
                let mut writer = ResponseWriter::new(object);
                let mut events = writer.opening();
                events.extend(writer.whole(&completion));
                let object = writer.object().clone();
                if let Some(keep) = keep {
                    keep.write(&object).await;
                }
                if request.is_stream() {
                    Ok(ResponseStart::Events(events))
                } else {
                    Ok(ResponseStart::Whole(Box::new(object)))
                }
            }
            ChatStart::Routed(stream, charge, _) => {
                let writer = ResponseWriter::new(object).keeping(keep);
                Ok(ResponseStart::Routed(Box::new(RoutedBlocks {
                    stream,
                    charge,
                    writer,
                })))
            }
        }
    }

    /// The conversation a turn continuing `previous` starts from: its
    /// conversation, then its output.
    async fn history_of(&self, context: &RequestContext, previous: &str) -> Result<Vec<Item>> {
        let missing = || {
            crate::Error::from(ApiError::invalid(
                "previous_response_id",
                InvalidCode::InvalidValue,
                format!("Previous response with id '{previous}' not found."),
            ))
        };
        let stored = match self.stored_response(context, previous).await {
            Ok(stored) => stored,
            Err(crate::Error::Api(ApiError::NotFound { .. })) => return Err(missing()),
            Err(err) => return Err(err),
        };
        let mut history: Vec<Item> = serde_json::from_str(&stored.context).map_err(internal)?;
        let object: ResponseObject = serde_json::from_str(&stored.response).map_err(internal)?;
        history.extend(object.output);
        Ok(history)
    }

    /// Stores `object` `queued` and runs the answer detached, polling for a
    /// cancel request; the client gets the queued object.
    async fn run_background(
        &self,
        started: ChatStart,
        object: ResponseObject,
        keep: Option<Keep>,
        timeout: Duration,
    ) -> Result<ResponseStart> {
        let Some(mut keep) = keep else {
            return Err(internal("a background response without a store"));
        };
        let mut queued = object.clone();
        queued.status = "queued".into();
        // Its runner lives in this instance: if the instance dies, the
        // lease sweep ends it `failed` (see `fail_orphaned`).
        keep.owner = self.meter().and_then(|m| m.owner()).map(str::to_owned);
        keep.try_write(&queued).await?;
        keep.created = true;
        let id = object.id.clone();
        tokio::spawn(async move {
            // Its generation is submitted: a polling client reads it as
            // running until it ends.
            let mut running = object.clone();
            running.status = "in_progress".into();
            keep.write(&running).await;
            let mut writer = ResponseWriter::new(object);
            let cancelled = async {
                loop {
                    tokio::time::sleep(CANCEL_POLL).await;
                    match keep
                        .store
                        .response_should_stop(&keep.org_id, &keep.project_id, &id)
                        .await
                    {
                        Ok(true) => return,
                        Ok(false) => {}
                        Err(err) => tracing::warn!(%id, error = %err, "polling a cancel failed"),
                    }
                }
            };
            let answer = async {
                match started {
                    ChatStart::Local(answer, chunks) => answer
                        .collect_within(timeout)
                        .await
                        .map(|whole| chunks.completion(whole)),
                    ChatStart::RoutedWhole(completion) => Ok(completion),
                    ChatStart::Routed(..) => Err(ApiError::Internal {
                        detail: "a routed Responses turn was streamed".into(),
                    }),
                }
            };
            // Dropping the answer (cancelled) cancels its generation and
            // settles its charge for what it produced.
            tokio::select! {
                answer = answer => match answer {
                    Ok(completion) => {
                        writer.whole(&completion);
                    }
                    Err(err) => {
                        writer.failed(&err);
                    }
                },
                () = cancelled => writer.cancelled(),
            }
            keep.write(writer.object()).await;
        });
        Ok(ResponseStart::Whole(Box::new(queued)))
    }

    /// `GET /v1/responses/{id}`.
    pub async fn retrieve_response(
        &self,
        context: &RequestContext,
        id: &str,
    ) -> Result<ResponseObject> {
        let stored = self.stored_response(context, id).await?;
        serde_json::from_str(&stored.response).map_err(internal)
    }

    /// `DELETE /v1/responses/{id}`.
    pub async fn delete_response(
        &self,
        context: &RequestContext,
        id: &str,
    ) -> Result<DeletedResponse> {
        let stored = self.stored_response(context, id).await?;
        if let Some((store, org, project)) = self.response_owner(context) {
            store.delete_response(&org, &project, &stored.id).await?;
        }
        Ok(DeletedResponse {
            id: stored.id,
            object: "response".into(),
            deleted: true,
        })
    }

    /// `POST /v1/responses/{id}/cancel`: only a background response can be
    /// cancelled; one already over is returned as it is.
    pub async fn cancel_response(
        &self,
        context: &RequestContext,
        id: &str,
    ) -> Result<ResponseObject> {
        let stored = self.stored_response(context, id).await?;
        let object: ResponseObject = serde_json::from_str(&stored.response).map_err(internal)?;
        if !object.background {
            return Err(ApiError::invalid(
                "response_id",
                InvalidCode::InvalidValue,
                "Only responses created with 'background': true can be cancelled.",
            )
            .into());
        }
        if !matches!(object.status.as_str(), "queued" | "in_progress") {
            return Ok(object);
        }
        let Some((store, org, project)) = self.response_owner(context) else {
            return Err(not_found(id));
        };
        store.request_response_cancel(&org, &project, id).await?;
        // The runner writes `cancelled` when it sees the request; answer
        // with that status now.
        let mut object = object;
        object.status = "cancelled".into();
        Ok(object)
    }

    /// `GET /v1/responses/{id}/input_items`.
    pub async fn response_input_items(
        &self,
        context: &RequestContext,
        id: &str,
        page: &ItemsPage,
    ) -> Result<ItemList> {
        let stored = self.stored_response(context, id).await?;
        let mut items: Vec<Item> = serde_json::from_str(&stored.input_items).map_err(internal)?;
        match page.order.as_deref() {
            None | Some("desc") => items.reverse(),
            Some("asc") => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    "order",
                    InvalidCode::InvalidValue,
                    format!("Invalid 'order': '{other}'; expected 'asc' or 'desc'."),
                )
                .into())
            }
        }
        let limit = page.limit.unwrap_or(20);
        if !(1..=MAX_ITEMS_PAGE as i64).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                InvalidCode::InvalidValue,
                format!("Invalid 'limit': expected 1 to {MAX_ITEMS_PAGE}, got {limit}."),
            )
            .into());
        }
        let start = match &page.after {
            Some(after) => match items.iter().position(|item| item.id() == after) {
                Some(position) => position + 1,
                None => {
                    return Err(ApiError::invalid(
                        "after",
                        InvalidCode::InvalidValue,
                        format!("No input item with id '{after}' in this response."),
                    )
                    .into())
                }
            },
            None => 0,
        };
        let rest = items.split_off(start.min(items.len()));
        let has_more = rest.len() > limit as usize;
        let data: Vec<Item> = rest.into_iter().take(limit as usize).collect();
        Ok(ItemList {
            object: "list".into(),
            first_id: data.first().map(|item| item.id().to_owned()),
            last_id: data.last().map(|item| item.id().to_owned()),
            data,
            has_more,
        })
    }
}
