//! The chat app's conversations and their messages, stored per person.
//!
//! Every operation takes the organisation AND the user: a conversation of
//! another user (or of the same user in another organisation) is
//! [`StoreError::NotFound`], never shown. Messages are kept in order by a
//! per-conversation sequence number; [`Store::truncate_conversation`] drops
//! a message and everything after it (edit-and-resend, regenerate).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{new_id, now_ms, Result, Store, StoreError};

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// `conv_…`
    pub id: String,
    /// The organisation it belongs to.
    pub org_id: String,
    /// The person who owns it.
    pub user_id: String,
    /// Display title.
    pub title: String,
    /// The model last chosen for it.
    pub model: String,
    /// The system prompt ('' for none).
    pub system_prompt: String,
    /// A JSON object of generation settings (temperature, max_tokens, …).
    pub settings: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last change (a new message, a rename).
    pub updated_at: i64,
}

/// What a new conversation starts with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewConversation {
    /// Display title.
    pub title: String,
    /// The model chosen.
    pub model: String,
    /// The system prompt ('' for none).
    pub system_prompt: String,
    /// A JSON object; '' means `{}`.
    pub settings: String,
}

/// A partial update: `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationUpdate {
    /// A new title (renaming).
    pub title: Option<String>,
    /// A new model.
    pub model: Option<String>,
    /// A new system prompt.
    pub system_prompt: Option<String>,
    /// New settings (a JSON object).
    pub settings: Option<String>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `msg_…`
    pub id: String,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The request that generated it (assistant messages), for the ledger.
    pub request_id: Option<String>,
    /// Prompt tokens of that request.
    pub prompt_tokens: Option<i64>,
    /// Tokens generated for it.
    pub completion_tokens: Option<i64>,
}

/// A message to append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
    /// The request that generated it, if any.
    pub request_id: Option<String>,
    /// Prompt tokens of that request.
    pub prompt_tokens: Option<i64>,
    /// Tokens generated for it.
    pub completion_tokens: Option<i64>,
}

/// The most conversations one list returns.
pub const MAX_CONVERSATIONS_PAGE: u32 = 500;

const CONVERSATION_COLUMNS: &str = "c.id, c.org_id, c.user_id, c.title, c.model, \
     c.system_prompt, c.settings, c.created_at, c.updated_at";
const MESSAGE_COLUMNS: &str = "id, conversation_id, role, content, created_at, request_id, \
     prompt_tokens, completion_tokens";

fn conversation_from_row(row: &AnyRow) -> Result<Conversation> {
    Ok(Conversation {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        user_id: row.try_get("user_id")?,
        title: row.try_get("title")?,
        model: row.try_get("model")?,
        system_prompt: row.try_get("system_prompt")?,
        settings: row.try_get("settings")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn message_from_row(row: &AnyRow) -> Result<Message> {
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        role: row.try_get("role")?,
        content: row.try_get("content")?,
        created_at: row.try_get("created_at")?,
        request_id: row.try_get("request_id")?,
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
    })
}

/// `settings` must be a JSON object; '' stands for `{}`.
fn checked_settings(settings: &str) -> Result<String> {
    if settings.trim().is_empty() {
        return Ok("{}".to_owned());
    }
    match serde_json::from_str::<serde_json::Value>(settings) {
        Ok(serde_json::Value::Object(_)) => Ok(settings.to_owned()),
        _ => Err(StoreError::InvalidRequest(
            "settings must be a JSON object".into(),
        )),
    }
}

fn checked_role(role: &str) -> Result<()> {
    match role {
        "system" | "user" | "assistant" => Ok(()),
        other => Err(StoreError::InvalidRequest(format!(
            "unknown message role {other:?}"
        ))),
    }
}

/// `text` as a LIKE pattern matching it anywhere, lower-cased, with `\` as
/// the escape character.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// Starts a conversation for `user_id` in the organisation.
    pub async fn create_conversation(
        &self,
        org_id: &str,
        user_id: &str,
        new: &NewConversation,
    ) -> Result<Conversation> {
        let now = now_ms();
        let conversation = Conversation {
            id: new_id("conv"),
            org_id: org_id.to_owned(),
            user_id: user_id.to_owned(),
            title: new.title.clone(),
            model: new.model.clone(),
            system_prompt: new.system_prompt.clone(),
            settings: checked_settings(&new.settings)?,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO conversations (id, org_id, user_id, title, model, system_prompt, \
             settings, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&conversation.id)
        .bind(&conversation.org_id)
        .bind(&conversation.user_id)
        .bind(&conversation.title)
        .bind(&conversation.model)
        .bind(&conversation.system_prompt)
        .bind(&conversation.settings)
        .bind(conversation.created_at)
        .bind(conversation.updated_at)
        .execute(self.pool())
        .await?;
        Ok(conversation)
    }

    /// The user's conversations, most recently changed first, at most
    /// `limit` (capped at [`MAX_CONVERSATIONS_PAGE`]); with `search`, only
    /// those whose title or any message contains it (case-insensitively).
    pub async fn list_conversations(
        &self,
        org_id: &str,
        user_id: &str,
        search: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Conversation>> {
        let limit = i64::from(limit.clamp(1, MAX_CONVERSATIONS_PAGE));
        let search = search.map(str::trim).filter(|s| !s.is_empty());
        let rows = match search {
            None => {
                sqlx::query(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations c \
                     WHERE c.org_id = $1 AND c.user_id = $2 \
                     ORDER BY c.updated_at DESC, c.id DESC LIMIT $3"
                ))
                .bind(org_id)
                .bind(user_id)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            Some(text) => {
                sqlx::query(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations c \
                     WHERE c.org_id = $1 AND c.user_id = $2 \
                     AND (LOWER(c.title) LIKE $3 ESCAPE '\\' OR EXISTS ( \
                       SELECT 1 FROM conversation_messages m WHERE m.conversation_id = c.id \
                       AND LOWER(m.content) LIKE $4 ESCAPE '\\')) \
                     ORDER BY c.updated_at DESC, c.id DESC LIMIT $5"
                ))
                .bind(org_id)
                .bind(user_id)
                .bind(contains_pattern(text))
                .bind(contains_pattern(text))
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(conversation_from_row).collect()
    }

    /// One of the user's conversations.
    pub async fn get_conversation(
        &self,
        org_id: &str,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<Conversation> {
        let row = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c \
             WHERE c.id = $1 AND c.org_id = $2 AND c.user_id = $3"
        ))
        .bind(conversation_id)
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
        conversation_from_row(&row)
    }

    /// The messages of one of the user's conversations, in order.
    pub async fn list_messages(
        &self,
        org_id: &str,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<Vec<Message>> {
        self.get_conversation(org_id, user_id, conversation_id)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM conversation_messages \
             WHERE conversation_id = $1 ORDER BY seq"
        ))
        .bind(conversation_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// Changes what `update` names (renaming, another model or settings).
    pub async fn update_conversation(
        &self,
        org_id: &str,
        user_id: &str,
        conversation_id: &str,
        update: &ConversationUpdate,
    ) -> Result<Conversation> {
        let mut conversation = self
            .get_conversation(org_id, user_id, conversation_id)
            .await?;
        if let Some(title) = &update.title {
            conversation.title.clone_from(title);
        }
        if let Some(model) = &update.model {
            conversation.model.clone_from(model);
        }
        if let Some(prompt) = &update.system_prompt {
            conversation.system_prompt.clone_from(prompt);
        }
        if let Some(settings) = &update.settings {
            conversation.settings = checked_settings(settings)?;
        }
        conversation.updated_at = now_ms().max(conversation.updated_at);
        sqlx::query(
            "UPDATE conversations SET title = $1, model = $2, system_prompt = $3, \
             settings = $4, updated_at = $5 WHERE id = $6 AND org_id = $7 AND user_id = $8",
        )
        .bind(&conversation.title)
        .bind(&conversation.model)
        .bind(&conversation.system_prompt)
        .bind(&conversation.settings)
        .bind(conversation.updated_at)
        .bind(conversation_id)
        .bind(org_id)
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(conversation)
    }

    /// Deletes one of the user's conversations with its messages.
    pub async fn delete_conversation(
        &self,
        org_id: &str,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<()> {
        // Messages first: the cascade is not relied on.
        self.get_conversation(org_id, user_id, conversation_id)
            .await?;
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM conversation_messages WHERE conversation_id = $1")
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        let done =
            sqlx::query("DELETE FROM conversations WHERE id = $1 AND org_id = $2 AND user_id = $3")
                .bind(conversation_id)
                .bind(org_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("conversation"));
        }
        Ok(())
    }

    /// Appends a message at the end of one of the user's conversations and
    /// marks the conversation changed.
    pub async fn append_message(
        &self,
        org_id: &str,
        user_id: &str,
        conversation_id: &str,
        new: &NewMessage,
    ) -> Result<Message> {
        checked_role(&new.role)?;
        let conversation = self
            .get_conversation(org_id, user_id, conversation_id)
            .await?;
        let message = Message {
            id: new_id("msg"),
            conversation_id: conversation_id.to_owned(),
            role: new.role.clone(),
            content: new.content.clone(),
            created_at: now_ms(),
            request_id: new.request_id.clone(),
            prompt_tokens: new.prompt_tokens,
            completion_tokens: new.completion_tokens,
        };
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO conversation_messages (id, conversation_id, seq, role, content, \
             created_at, request_id, prompt_tokens, completion_tokens) \
             SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5, $6, $7, $8 \
             FROM conversation_messages WHERE conversation_id = $9",
        )
        .bind(&message.id)
        .bind(&message.conversation_id)
        .bind(&message.role)
        .bind(&message.content)
        .bind(message.created_at)
        .bind(&message.request_id)
        .bind(message.prompt_tokens)
        .bind(message.completion_tokens)
        .bind(&message.conversation_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::error::conflict_on_unique(e, "a message was appended at once"))?;
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(message.created_at.max(conversation.updated_at))
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(message)
    }

    /// Deletes `from_message_id` and every message after it in one of the
    /// user's conversations (edit-and-resend, regenerate); returns how many
    /// were deleted.
    pub async fn truncate_conversation(
        &self,
        org_id: &str,
        user_id: &str,
        conversation_id: &str,
        from_message_id: &str,
    ) -> Result<u64> {
        self.get_conversation(org_id, user_id, conversation_id)
            .await?;
        let row = sqlx::query(
            "SELECT seq FROM conversation_messages WHERE id = $1 AND conversation_id = $2",
        )
        .bind(from_message_id)
        .bind(conversation_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound("message"))?;
        let seq: i64 = row.try_get("seq")?;
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "DELETE FROM conversation_messages WHERE conversation_id = $1 AND seq >= $2",
        )
        .bind(conversation_id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_wildcards_and_lower_case() {
        assert_eq!(contains_pattern("A%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    #[test]
    fn settings_must_be_an_object() {
        assert_eq!(checked_settings("").unwrap(), "{}");
        assert!(checked_settings("[1]").is_err());
        assert!(checked_settings("{\"temperature\":0.5}").is_ok());
    }
}
