//! Stored chat completions (`store: true`): keeping an answer, and the use
//! cases behind `GET /v1/chat/completions`, `GET/POST/DELETE
//! /v1/chat/completions/{id}` and `GET /v1/chat/completions/{id}/messages`.
//!
//! - [`Keeper`]: made by `Service::chat` for a request that asks to be
//!   stored (it needs a store and a tenant: a server without a database
//!   refuses `store: true` with a 400 naming `store`). It writes the answer,
//!   the request's messages (each with the id `{completion id}-{index}`),
//!   the model and the `metadata` under the tenant's organisation and
//!   project once the answer is complete — a whole answer before it is
//!   returned, a stream before its last chunks and `[DONE]` (a routed
//!   stream's chunks are gathered by a [`ChunkKeeper`]: its text and
//!   finish reasons). A failed answer is not stored.
//! - [`get`], [`list`], [`update`], [`delete`], [`messages`]: the stored
//!   objects of the caller's project only; another organisation's or
//!   project's id reads as unknown (404), and an `after` that names no
//!   stored object of the caller is a 400 naming `after`.
//!
//! A stored completion is answered as the `chat.completion` object it was,
//! plus its current `metadata`.

use std::collections::BTreeMap;

use api::stored::{ListOrder, Paging, StoredCompletionsQuery, StoredMessagesQuery};
use api::{
    ApiError, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionDeleted,
    ChatCompletionMessage, ChatCompletionRequest, ChatCompletionUpdate, FinishReason, InvalidCode,
    ListPage, Usage,
};
use serde_json::{json, Value};
use store::{NewStoredChatCompletion, Store, StoreError, StoredChatCompletion};

use crate::{Result, Tenant};

/// Writes one request's answer to the store once it is complete (boxed:
/// it rides in every chat answer's format).
#[derive(Clone)]
pub struct Keeper(Box<KeeperInner>);

/// What a [`Keeper`] holds: where to store, and the request's part.
#[derive(Clone)]
pub struct KeeperInner {
    store: Store,
    org_id: String,
    project_id: String,
    model: String,
    /// The request's messages as sent (ids are added when kept).
    messages: Vec<Value>,
    metadata: BTreeMap<String, String>,
}

impl std::ops::Deref for Keeper {
    type Target = KeeperInner;

    fn deref(&self) -> &KeeperInner {
        &self.0
    }
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("org_id", &self.org_id)
            .field("project_id", &self.project_id)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Keeper {
    /// The keeper of `request` (answered as `model`) when it sets `store:
    /// true`; `None` when it does not. Without a store or a tenant the
    /// request is refused: 400 naming `store`.
    pub fn for_request(
        store: Option<&Store>,
        tenant: Option<&Tenant>,
        request: &ChatCompletionRequest,
        model: &str,
    ) -> Result<Option<Keeper>> {
        if request.store != Some(true) {
            return Ok(None);
        }
        let (Some(store), Some(tenant)) = (store, tenant) else {
            return Err(ApiError::invalid(
                "store",
                InvalidCode::InvalidValue,
                "This server has no database, so it cannot store chat completions; \
                 start it with a data directory or --database-url, or leave `store` unset.",
            )
            .into());
        };
        let messages = request
            .messages
            .iter()
            .map(|message| serde_json::to_value(message).map(stored_message))
            .collect::<serde_json::Result<Vec<_>>>()
            .map_err(|err| ApiError::Internal {
                detail: format!("cannot keep the messages: {err}"),
            })?;
        Ok(Some(Keeper(Box::new(KeeperInner {
            store: store.clone(),
            org_id: tenant.org_id.clone(),
            project_id: tenant.project_id.clone(),
            model: model.to_owned(),
            messages,
            metadata: request.metadata.clone().unwrap_or_default(),
        }))))
    }

    /// Stores `completion`. A failure is logged, not returned: the answer
    /// has been generated and billed, and the client still gets it.
    pub async fn keep(&self, completion: &ChatCompletion) {
        if let Err(err) = self.try_keep(completion).await {
            tracing::error!(
                error = %err,
                id = %completion.id,
                "cannot store the chat completion (store: true)"
            );
        }
    }

    async fn try_keep(&self, completion: &ChatCompletion) -> Result<()> {
        let id = completion.id.clone();
        let messages: Vec<Value> = self
            .messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                let mut message = message.clone();
                if let Value::Object(object) = &mut message {
                    object.insert("id".into(), Value::String(format!("{id}-{index}")));
                }
                message
            })
            .collect();
        let new = NewStoredChatCompletion {
            id,
            model: self.model.clone(),
            completion: serde_json::to_string(completion).map_err(|err| ApiError::Internal {
                detail: format!("cannot serialise the completion: {err}"),
            })?,
            messages: Value::Array(messages).to_string(),
            metadata: self.metadata.clone(),
        };
        self.store
            .create_stored_chat_completion(&self.org_id, &self.project_id, &new)
            .await?;
        Ok(())
    }
}

/// A routed stream's chunks gathered for its [`Keeper`]: each choice's text
/// and finish reason, stored as the whole `chat.completion` they make when
/// the stream has ended ([`ChunkKeeper::finish`]).
#[derive(Debug)]
pub struct ChunkKeeper {
    keeper: Keeper,
    head: Option<(String, u64, String)>,
    choices: Vec<(String, Option<FinishReason>)>,
}

impl Keeper {
    /// Gathers a routed stream's chunks for this keeper.
    pub fn chunks(self) -> ChunkKeeper {
        ChunkKeeper {
            keeper: self,
            head: None,
            choices: Vec::new(),
        }
    }
}

impl ChunkKeeper {
    /// Takes in one chunk of the stream.
    pub fn observe(&mut self, chunk: &ChatCompletionChunk) {
        self.head
            .get_or_insert_with(|| (chunk.id.clone(), chunk.created, chunk.model.clone()));
        for choice in &chunk.choices {
            let index = choice.index as usize;
            if self.choices.len() <= index {
                self.choices.resize_with(index + 1, Default::default);
            }
            let (text, reason) = &mut self.choices[index];
            if let Some(content) = &choice.delta.content {
                text.push_str(content);
            }
            if choice.finish_reason.is_some() {
                *reason = choice.finish_reason;
            }
        }
    }

    /// Stores the answer the chunks made, with `usage` (the stream's).
    pub async fn finish(self, usage: Usage) {
        let Some((id, created, model)) = self.head else {
            return;
        };
        let choices = self
            .choices
            .into_iter()
            .enumerate()
            .map(|(index, (text, reason))| ChatChoice {
                index: index as u32,
                message: ChatCompletionMessage::assistant(text),
                logprobs: None,
                finish_reason: reason.unwrap_or(FinishReason::Stop),
            })
            .collect();
        let completion = ChatCompletion::new(id, created, model, choices, usage);
        self.keeper.keep(&completion).await;
    }
}

/// A request message as a stored message: an array `content` becomes its
/// joined text, the parts kept as `content_parts` (as OpenAI answers).
fn stored_message(mut message: Value) -> Value {
    if let Value::Object(object) = &mut message {
        if let Some(Value::Array(parts)) = object.get("content").cloned() {
            let text: String = parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect();
            object.insert("content".into(), Value::String(text));
            object.insert("content_parts".into(), Value::Array(parts));
        } else if !object.contains_key("content") {
            object.insert("content".into(), Value::Null);
        }
    }
    message
}

/// The store of the stored-completion routes: without one they answer
/// 404, like every route that needs a database.
fn require(store: Option<&Store>, tenant: Option<&Tenant>) -> Result<(Store, Tenant)> {
    match (store, tenant) {
        (Some(store), Some(tenant)) => Ok((store.clone(), tenant.clone())),
        _ => Err(ApiError::NotFound {
            message: "Stored chat completions need a database; this server has none.".into(),
        }
        .into()),
    }
}

/// The stored row as its API object: the `chat.completion` it was, under
/// its id, with its current metadata.
fn object(row: &StoredChatCompletion) -> Result<Value> {
    let mut value: Value = serde_json::from_str(&row.completion).map_err(|err| {
        crate::Error::from(StoreError::Corrupt(format!("stored completion: {err}")))
    })?;
    if let Value::Object(object) = &mut value {
        object.insert("id".into(), Value::String(row.id.clone()));
        object.insert("object".into(), Value::String("chat.completion".into()));
        object.insert("metadata".into(), json!(row.metadata));
    }
    Ok(value)
}

fn id_of(value: &Value) -> String {
    value
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A 400 naming `after` for a cursor that names nothing of the caller's.
fn bad_cursor(after: &str) -> crate::Error {
    ApiError::invalid(
        "after",
        InvalidCode::InvalidValue,
        format!(
            "Invalid 'after': `{after}` is not the id of an object in this list; pass the \
             `last_id` of the previous page."
        ),
    )
    .into()
}

/// One stored completion of the caller's project.
pub async fn get(store: Option<&Store>, tenant: Option<&Tenant>, id: &str) -> Result<Value> {
    let (store, tenant) = require(store, tenant)?;
    let row = store
        .get_stored_chat_completion(&tenant.org_id, &tenant.project_id, id)
        .await?;
    object(&row)
}

/// A page of the caller's project's stored completions.
pub async fn list(
    store: Option<&Store>,
    tenant: Option<&Tenant>,
    query: &StoredCompletionsQuery,
) -> Result<ListPage<Value>> {
    let (store, tenant) = require(store, tenant)?;
    let paging = &query.paging;
    let page = store
        .list_stored_chat_completions(
            &tenant.org_id,
            &tenant.project_id,
            &store::StoredChatCompletionQuery {
                after: paging.after.clone(),
                limit: paging.limit,
                descending: paging.order == ListOrder::Desc,
                model: query.model.clone(),
                metadata: query.metadata.clone(),
            },
        )
        .await;
    let page = match page {
        Ok(page) => page,
        Err(StoreError::InvalidCursor(_)) => {
            return Err(bad_cursor(paging.after.as_deref().unwrap_or_default()))
        }
        Err(err) => return Err(err.into()),
    };
    let data = page.data.iter().map(object).collect::<Result<Vec<_>>>()?;
    Ok(ListPage::new(data, page.has_more, id_of))
}

/// Replaces a stored completion's metadata (`null` clears it).
pub async fn update(
    store: Option<&Store>,
    tenant: Option<&Tenant>,
    id: &str,
    update: ChatCompletionUpdate,
) -> Result<Value> {
    let (store, tenant) = require(store, tenant)?;
    let row = store
        .update_stored_chat_completion_metadata(
            &tenant.org_id,
            &tenant.project_id,
            id,
            &update.metadata.unwrap_or_default(),
        )
        .await?;
    object(&row)
}

/// Deletes a stored completion.
pub async fn delete(
    store: Option<&Store>,
    tenant: Option<&Tenant>,
    id: &str,
) -> Result<ChatCompletionDeleted> {
    let (store, tenant) = require(store, tenant)?;
    store
        .delete_stored_chat_completion(&tenant.org_id, &tenant.project_id, id)
        .await?;
    Ok(ChatCompletionDeleted::new(id))
}

/// A page of a stored completion's request messages.
pub async fn messages(
    store: Option<&Store>,
    tenant: Option<&Tenant>,
    id: &str,
    query: &StoredMessagesQuery,
) -> Result<ListPage<Value>> {
    let (store, tenant) = require(store, tenant)?;
    let row = store
        .get_stored_chat_completion(&tenant.org_id, &tenant.project_id, id)
        .await?;
    let messages: Vec<Value> = serde_json::from_str(&row.messages).map_err(|err| {
        crate::Error::from(StoreError::Corrupt(format!("stored messages: {err}")))
    })?;
    let (data, has_more) = page_of(messages, &query.paging)?;
    Ok(ListPage::new(data, has_more, id_of))
}

/// One page of `items` (oldest first as stored) by `paging`.
fn page_of(mut items: Vec<Value>, paging: &Paging) -> Result<(Vec<Value>, bool)> {
    if paging.order == ListOrder::Desc {
        items.reverse();
    }
    let start = match &paging.after {
        Some(after) => {
            let at = items
                .iter()
                .position(|item| item.get("id").and_then(Value::as_str) == Some(after))
                .ok_or_else(|| bad_cursor(after))?;
            at + 1
        }
        None => 0,
    };
    let rest: Vec<Value> = items.into_iter().skip(start).collect();
    let limit = paging.limit as usize;
    let has_more = rest.len() > limit;
    Ok((rest.into_iter().take(limit).collect(), has_more))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("m-{i}")})).collect()
    }

    fn ids(page: &[Value]) -> Vec<String> {
        page.iter().map(id_of).collect()
    }

    #[test]
    fn message_pages_follow_after_limit_and_order() {
        let paging = |after: Option<&str>, limit, order| Paging {
            after: after.map(str::to_owned),
            limit,
            order,
        };
        let (page, more) = page_of(items(5), &paging(None, 2, ListOrder::Asc)).unwrap();
        assert_eq!(ids(&page), ["m-0", "m-1"]);
        assert!(more);
        let (page, more) = page_of(items(5), &paging(Some("m-1"), 10, ListOrder::Asc)).unwrap();
        assert_eq!(ids(&page), ["m-2", "m-3", "m-4"]);
        assert!(!more);
        let (page, _) = page_of(items(5), &paging(Some("m-3"), 2, ListOrder::Desc)).unwrap();
        assert_eq!(ids(&page), ["m-2", "m-1"]);
        let (page, more) = page_of(items(5), &paging(None, 0, ListOrder::Asc)).unwrap();
        assert!(page.is_empty() && more);
        let err =
            ApiError::from(page_of(items(2), &paging(Some("x"), 2, ListOrder::Asc)).unwrap_err());
        assert_eq!(err.param(), Some("after"));
    }

    #[test]
    fn array_content_is_joined_and_kept_as_parts() {
        let message = stored_message(json!({
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
        }));
        assert_eq!(message["content"], "ab");
        assert_eq!(message["content_parts"][1]["text"], "b");
        let assistant = stored_message(json!({"role": "assistant", "tool_calls": []}));
        assert_eq!(assistant["content"], Value::Null);
    }
}
