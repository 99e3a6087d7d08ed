//! Stored chat completions on the wire (`store: true`, then
//! `GET/POST/DELETE /v1/chat/completions[/{id}[/messages]]`): the
//! `metadata` rules every stored object shares ([`check_metadata`]), the
//! list queries ([`StoredCompletionsQuery`], [`StoredMessagesQuery`]) read
//! from the query string with errors naming the `param`, the update body
//! ([`ChatCompletionUpdate`]), the cursor page ([`ListPage`]) and
//! [`ChatCompletionDeleted`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, InvalidCode};

/// The most pairs a `metadata` object holds.
pub const MAX_METADATA_PAIRS: usize = 16;
/// The longest `metadata` key, in characters.
pub const MAX_METADATA_KEY: usize = 64;
/// The longest `metadata` value, in characters.
pub const MAX_METADATA_VALUE: usize = 512;
/// A list page's size when the query sets no `limit`.
pub const DEFAULT_LIST_LIMIT: u32 = 20;
/// The largest `limit` a list accepts.
pub const MAX_LIST_LIMIT: u32 = 100;

/// Checks `metadata` as OpenAI does: at most 16 pairs, keys of at most 64
/// characters, values of at most 512; errors name `param`.
pub fn check_metadata(param: &str, metadata: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if metadata.len() > MAX_METADATA_PAIRS {
        return Err(ApiError::invalid(
            param,
            InvalidCode::InvalidValue,
            format!(
                "Invalid '{param}': too many properties. Expected an object with at most \
                 {MAX_METADATA_PAIRS} properties, but got an object with {} properties instead.",
                metadata.len()
            ),
        ));
    }
    for (key, value) in metadata {
        let key_len = key.chars().count();
        if key_len > MAX_METADATA_KEY {
            return Err(ApiError::invalid(
                param,
                InvalidCode::InvalidValue,
                format!(
                    "Invalid '{param}': key '{}…' is too long. Expected a key with at most \
                     {MAX_METADATA_KEY} characters, but got {key_len} characters instead.",
                    key.chars().take(16).collect::<String>()
                ),
            ));
        }
        let value_len = value.chars().count();
        if value_len > MAX_METADATA_VALUE {
            return Err(ApiError::invalid(
                format!("{param}.{key}"),
                InvalidCode::InvalidValue,
                format!(
                    "Invalid '{param}.{key}': string too long. Expected a string with maximum \
                     length {MAX_METADATA_VALUE}, but got a string with length {value_len} \
                     instead."
                ),
            ));
        }
    }
    Ok(())
}

/// `POST /v1/chat/completions/{id}`: the new metadata (replacing the old
/// whole; `null` clears it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionUpdate {
    /// The pairs to keep.
    pub metadata: Option<BTreeMap<String, String>>,
}

impl ChatCompletionUpdate {
    /// Parses an update body: `metadata` is required (an object of strings
    /// or `null`) and checked by [`check_metadata`].
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|err| crate::from_json_error(&err))?;
        let Some(object) = value.as_object() else {
            return Err(ApiError::invalid_body(
                "The body must be a JSON object with `metadata`.",
            ));
        };
        let Some(metadata) = object.get("metadata") else {
            return Err(ApiError::invalid(
                "metadata",
                InvalidCode::MissingRequiredParameter,
                "Missing required parameter: 'metadata'.",
            ));
        };
        let metadata: Option<BTreeMap<String, String>> = serde_json::from_value(metadata.clone())
            .map_err(|_| {
            ApiError::invalid(
                "metadata",
                InvalidCode::InvalidType,
                "Invalid type for 'metadata': expected an object of string values, or null.",
            )
        })?;
        if let Some(metadata) = &metadata {
            check_metadata("metadata", metadata)?;
        }
        Ok(ChatCompletionUpdate { metadata })
    }
}

/// Sort order of a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// Oldest first (the default).
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// The paging part of a list's query string: `after`, `limit`, `order`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// Continue after this id.
    pub after: Option<String>,
    /// At most this many (0–100, default 20).
    pub limit: u32,
    /// The order.
    pub order: ListOrder,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            after: None,
            limit: DEFAULT_LIST_LIMIT,
            order: ListOrder::Asc,
        }
    }
}

impl Paging {
    /// Reads one query pair into the paging; `false` when it is not one
    /// of its keys.
    fn read(&mut self, key: &str, value: &str) -> Result<bool, ApiError> {
        match key {
            "after" => self.after = Some(value.to_owned()),
            "limit" => {
                self.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|limit| *limit <= MAX_LIST_LIMIT)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "limit",
                            InvalidCode::InvalidValue,
                            format!(
                                "Invalid 'limit': expected an integer from 0 to \
                                 {MAX_LIST_LIMIT}, but got '{value}'."
                            ),
                        )
                    })?
            }
            "order" => {
                self.order = match value {
                    "asc" => ListOrder::Asc,
                    "desc" => ListOrder::Desc,
                    _ => {
                        return Err(ApiError::invalid(
                            "order",
                            InvalidCode::InvalidValue,
                            format!(
                                "Invalid 'order': expected 'asc' or 'desc', but got '{value}'."
                            ),
                        ))
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `GET /v1/chat/completions`'s query: paging, `model`, and
/// `metadata[key]=value` filters (every pair must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredCompletionsQuery {
    /// `after`, `limit`, `order`.
    pub paging: Paging,
    /// Only this model's.
    pub model: Option<String>,
    /// Only those carrying all these pairs.
    pub metadata: BTreeMap<String, String>,
}

impl StoredCompletionsQuery {
    /// Reads the query string's (decoded) pairs; other keys are ignored.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut query = StoredCompletionsQuery::default();
        for (key, value) in pairs {
            if query.paging.read(key, value)? {
                continue;
            }
            if key == "model" {
                query.model = Some(value.clone());
            } else if let Some(name) = key
                .strip_prefix("metadata[")
                .and_then(|rest| rest.strip_suffix(']'))
            {
                query.metadata.insert(name.to_owned(), value.clone());
            }
        }
        check_metadata("metadata", &query.metadata)?;
        Ok(query)
    }
}

/// `GET /v1/chat/completions/{id}/messages`'s query: paging only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredMessagesQuery {
    /// `after` (a message id), `limit`, `order`.
    pub paging: Paging,
}

impl StoredMessagesQuery {
    /// Reads the query string's (decoded) pairs; other keys are ignored.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut query = StoredMessagesQuery::default();
        for (key, value) in pairs {
            query.paging.read(key, value)?;
        }
        Ok(query)
    }
}

/// A cursor page (`object: "list"`), as OpenAI's stored objects are listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListPage<T> {
    /// Always `list`.
    pub object: String,
    /// The page's items.
    pub data: Vec<T>,
    /// The first item's id (`null` on an empty page).
    pub first_id: Option<String>,
    /// The last item's id: the next page's `after` (`null` on an empty
    /// page).
    pub last_id: Option<String>,
    /// Whether more follow.
    pub has_more: bool,
}

impl<T> ListPage<T> {
    /// A page of `data`, whose ids `id_of` gives.
    pub fn new(data: Vec<T>, has_more: bool, id_of: impl Fn(&T) -> String) -> Self {
        ListPage {
            object: "list".to_owned(),
            first_id: data.first().map(&id_of),
            last_id: data.last().map(&id_of),
            data,
            has_more,
        }
    }
}

/// `DELETE /v1/chat/completions/{id}`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatCompletionDeleted {
    /// The id deleted.
    pub id: String,
    /// Always `chat.completion.deleted`.
    pub object: String,
    /// Always `true`.
    pub deleted: bool,
}

impl ChatCompletionDeleted {
    /// The `object` value.
    pub const OBJECT: &'static str = "chat.completion.deleted";

    /// The answer for `id`.
    pub fn new(id: impl Into<String>) -> Self {
        ChatCompletionDeleted {
            id: id.into(),
            object: Self::OBJECT.to_owned(),
            deleted: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn metadata_bounds_name_the_param() {
        let mut many: BTreeMap<String, String> = (0..17)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let err = check_metadata("metadata", &many).unwrap_err();
        assert_eq!(err.param(), Some("metadata"));
        many.remove("k0");
        assert!(check_metadata("metadata", &many).is_ok());
        let long_key = BTreeMap::from([("k".repeat(65), "v".to_string())]);
        assert_eq!(
            check_metadata("metadata", &long_key).unwrap_err().param(),
            Some("metadata")
        );
        let ok_key = BTreeMap::from([("k".repeat(64), "v".repeat(512))]);
        assert!(check_metadata("metadata", &ok_key).is_ok());
        let long_value = BTreeMap::from([("k".to_string(), "v".repeat(513))]);
        assert_eq!(
            check_metadata("metadata", &long_value).unwrap_err().param(),
            Some("metadata.k")
        );
    }

    #[test]
    fn list_queries_read_paging_model_and_metadata() {
        let query = StoredCompletionsQuery::from_pairs(&pairs(&[
            ("after", "chatcmpl-1"),
            ("limit", "0"),
            ("order", "desc"),
            ("model", "m"),
            ("metadata[team]", "red"),
            ("other", "ignored"),
        ]))
        .unwrap();
        assert_eq!(query.paging.after.as_deref(), Some("chatcmpl-1"));
        assert_eq!(query.paging.limit, 0);
        assert_eq!(query.paging.order, ListOrder::Desc);
        assert_eq!(query.model.as_deref(), Some("m"));
        assert_eq!(query.metadata.get("team").map(String::as_str), Some("red"));
        let default = StoredMessagesQuery::from_pairs(&[]).unwrap();
        assert_eq!(default.paging.limit, DEFAULT_LIST_LIMIT);
        for (key, value) in [
            ("limit", "101"),
            ("limit", "-1"),
            ("limit", "x"),
            ("order", "up"),
        ] {
            let err = StoredMessagesQuery::from_pairs(&pairs(&[(key, value)])).unwrap_err();
            assert_eq!(err.param(), Some(key), "{key}={value}");
        }
    }

    #[test]
    fn an_update_needs_metadata_of_strings() {
        let ok = ChatCompletionUpdate::parse(br#"{"metadata": {"a": "b"}}"#).unwrap();
        assert_eq!(ok.metadata.unwrap().get("a").map(String::as_str), Some("b"));
        assert_eq!(
            ChatCompletionUpdate::parse(br#"{"metadata": null}"#)
                .unwrap()
                .metadata,
            None
        );
        for body in [
            &br#"{}"#[..],
            br#"{"metadata": {"a": 1}}"#,
            br#"{"metadata": []}"#,
        ] {
            let err = ChatCompletionUpdate::parse(body).unwrap_err();
            assert_eq!(err.param(), Some("metadata"));
        }
    }
}
