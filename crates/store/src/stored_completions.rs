//! Stored chat completions (`POST /v1/chat/completions` with `store:
//! true`), scoped to one organisation AND one project: every read, update
//! and delete takes both, and another tenant's id is
//! [`StoreError::NotFound`], never shown.
//!
//! The store keeps what the service hands it as JSON text (the
//! `chat.completion` object, the request's messages with their ids) and
//! knows nothing of their shape; the metadata pairs are kept both as one
//! JSON object (read back with the row) and one row per pair, so that a
//! list filters on them in SQL on either database. Lists are pages ordered
//! by (created time, id), continued after a stored id of the same project.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, Result, Store, StoreError};

/// The most completions one list page holds.
pub const MAX_STORED_COMPLETIONS_PAGE: u32 = 100;

/// One stored chat completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// The organisation it belongs to.
    pub org_id: String,
    /// The project it belongs to.
    pub project_id: String,
    /// The model that answered (the name the answer carries).
    pub model: String,
    /// The `chat.completion` object (JSON).
    pub completion: String,
    /// The request's messages, each with its id (a JSON array).
    pub messages: String,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
    /// Created (unix ms).
    pub created_at: i64,
    /// Last written (unix ms).
    pub updated_at: i64,
}

/// A chat completion to store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewStoredChatCompletion {
    /// `chatcmpl-…`, chosen by the caller (it is already in the object).
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// The `chat.completion` object (JSON).
    pub completion: String,
    /// The request's messages with their ids (a JSON array).
    pub messages: String,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Which stored completions a list page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredChatCompletionQuery {
    /// Continue after this stored id (of the same project); an unknown id
    /// is [`StoreError::InvalidCursor`].
    pub after: Option<String>,
    /// At most this many (capped at [`MAX_STORED_COMPLETIONS_PAGE`]; `0`
    /// gives an empty page that still says whether there are more).
    pub limit: u32,
    /// Newest first instead of oldest first.
    pub descending: bool,
    /// Only this model's.
    pub model: Option<String>,
    /// Only those carrying every one of these pairs.
    pub metadata: BTreeMap<String, String>,
}

/// One page of stored completions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChatCompletionPage {
    /// The completions, in the order asked for.
    pub data: Vec<StoredChatCompletion>,
    /// Whether more follow the last one.
    pub has_more: bool,
}

const COLUMNS: &str =
    "id, org_id, project_id, model, completion, messages, metadata, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<StoredChatCompletion> {
    let metadata: String = row.try_get("metadata")?;
    let metadata = serde_json::from_str(&metadata)
        .map_err(|err| StoreError::Corrupt(format!("stored completion metadata: {err}")))?;
    Ok(StoredChatCompletion {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        project_id: row.try_get("project_id")?,
        model: row.try_get("model")?,
        completion: row.try_get("completion")?,
        messages: row.try_get("messages")?,
        metadata,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn metadata_json(metadata: &BTreeMap<String, String>) -> String {
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".to_owned())
}

impl Store {
    /// Stores `new` for the organisation's project; an id already stored
    /// is a [`StoreError::Conflict`].
    pub async fn create_stored_chat_completion(
        &self,
        org_id: &str,
        project_id: &str,
        new: &NewStoredChatCompletion,
    ) -> Result<StoredChatCompletion> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO stored_chat_completions (id, org_id, project_id, model, completion, \
             messages, metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&new.id)
        .bind(org_id)
        .bind(project_id)
        .bind(&new.model)
        .bind(&new.completion)
        .bind(&new.messages)
        .bind(metadata_json(&new.metadata))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a chat completion `{}` is already stored",
                new.id
            )));
        }
        for (key, value) in &new.metadata {
            sqlx::query(
                "INSERT INTO stored_chat_completion_metadata (completion_id, key, value) \
                 VALUES ($1, $2, $3)",
            )
            .bind(&new.id)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(StoredChatCompletion {
            id: new.id.clone(),
            org_id: org_id.to_owned(),
            project_id: project_id.to_owned(),
            model: new.model.clone(),
            completion: new.completion.clone(),
            messages: new.messages.clone(),
            metadata: new.metadata.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    /// One of the project's stored completions.
    pub async fn get_stored_chat_completion(
        &self,
        org_id: &str,
        project_id: &str,
        id: &str,
    ) -> Result<StoredChatCompletion> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM stored_chat_completions \
             WHERE id = $1 AND org_id = $2 AND project_id = $3"
        ))
        .bind(id)
        .bind(org_id)
        .bind(project_id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(StoreError::NotFound("chat completion")),
        }
    }

    /// A page of the project's stored completions (see
    /// [`StoredChatCompletionQuery`]).
    pub async fn list_stored_chat_completions(
        &self,
        org_id: &str,
        project_id: &str,
        query: &StoredChatCompletionQuery,
    ) -> Result<StoredChatCompletionPage> {
        let limit = query.limit.min(MAX_STORED_COMPLETIONS_PAGE);
        let cursor = match &query.after {
            Some(after) => {
                let row = sqlx::query(
                    "SELECT created_at FROM stored_chat_completions \
                     WHERE id = $1 AND org_id = $2 AND project_id = $3",
                )
                .bind(after)
                .bind(org_id)
                .bind(project_id)
                .fetch_optional(self.pool())
                .await?;
                let Some(row) = row else {
                    return Err(StoreError::InvalidCursor(format!(
                        "no stored chat completion `{after}` to continue after"
                    )));
                };
                Some((row.try_get::<i64, _>("created_at")?, after.clone()))
            }
            None => None,
        };
        let (newer, direction) = if query.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let mut sql = format!(
            "SELECT {COLUMNS} FROM stored_chat_completions c \
             WHERE org_id = $1 AND project_id = $2"
        );
        let mut next = 3;
        if query.model.is_some() {
            sql.push_str(&format!(" AND model = ${next}"));
            next += 1;
        }
        if cursor.is_some() {
            sql.push_str(&format!(
                " AND (created_at {newer} ${a} OR (created_at = ${a} AND id {newer} ${b}))",
                a = next,
                b = next + 1
            ));
            next += 2;
        }
        for _ in &query.metadata {
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM stored_chat_completion_metadata m \
                 WHERE m.completion_id = c.id AND m.key = ${} AND m.value = ${})",
                next,
                next + 1
            ));
            next += 2;
        }
        sql.push_str(&format!(
            " ORDER BY created_at {direction}, id {direction} LIMIT {}",
            u64::from(limit) + 1
        ));
        let mut statement = sqlx::query(&sql).bind(org_id).bind(project_id);
        if let Some(model) = &query.model {
            statement = statement.bind(model);
        }
        if let Some((created_at, id)) = &cursor {
            statement = statement.bind(*created_at).bind(id);
        }
        for (key, value) in &query.metadata {
            statement = statement.bind(key).bind(value);
        }
        let rows = statement.fetch_all(self.pool()).await?;
        let has_more = rows.len() > limit as usize;
        let data = rows
            .iter()
            .take(limit as usize)
            .map(from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(StoredChatCompletionPage { data, has_more })
    }

    /// Replaces a stored completion's metadata with `metadata`.
    pub async fn update_stored_chat_completion_metadata(
        &self,
        org_id: &str,
        project_id: &str,
        id: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<StoredChatCompletion> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE stored_chat_completions SET metadata = $1, updated_at = $2 \
             WHERE id = $3 AND org_id = $4 AND project_id = $5",
        )
        .bind(metadata_json(metadata))
        .bind(now_ms())
        .bind(id)
        .bind(org_id)
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("chat completion"));
        }
        sqlx::query("DELETE FROM stored_chat_completion_metadata WHERE completion_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for (key, value) in metadata {
            sqlx::query(
                "INSERT INTO stored_chat_completion_metadata (completion_id, key, value) \
                 VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get_stored_chat_completion(org_id, project_id, id)
            .await
    }

    /// Deletes a stored completion, its messages and metadata.
    pub async fn delete_stored_chat_completion(
        &self,
        org_id: &str,
        project_id: &str,
        id: &str,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "DELETE FROM stored_chat_completions \
             WHERE id = $1 AND org_id = $2 AND project_id = $3",
        )
        .bind(id)
        .bind(org_id)
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("chat completion"));
        }
        // The foreign key cascades too; this keeps a connection that runs
        // without foreign keys from leaving pairs behind.
        sqlx::query("DELETE FROM stored_chat_completion_metadata WHERE completion_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
