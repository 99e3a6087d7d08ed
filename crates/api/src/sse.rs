//! Server-sent-event framing for streamed answers.
//!
//! Each event is one `data: <json>` line and a blank line; the stream ends
//! with `data: [DONE]`. An error after streaming began is a data event
//! whose object has an `error` key, which the `openai` SDK raises as
//! `APIError` (no `event:` line is needed, and none is written).

use serde::Serialize;

use crate::error::{ApiError, ErrorResponse};

/// The event that ends every stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// Sent if an event ever fails to serialise: still a well-formed error.
const FALLBACK_ERROR_EVENT: &str = "data: {\"error\":{\"message\":\"The server had an error \
     while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";

/// `data: <json>\n\n` for one event.
///
/// Serialising the crate's own types cannot fail (no maps with non-string
/// keys, no failing `Serialize` impls); should a caller's type fail, the
/// event becomes a generic error event rather than a panic.
pub fn sse_data(json: &impl Serialize) -> String {
    match serde_json::to_string(json) {
        Ok(text) => format!("data: {text}\n\n"),
        Err(_) => FALLBACK_ERROR_EVENT.to_owned(),
    }
}

/// The terminating `data: [DONE]\n\n` event.
pub fn sse_done() -> &'static str {
    SSE_DONE
}

/// An error event, `data: {"error": {...}}\n\n`, for an error that happens
/// after the stream began. Follow it with [`SSE_DONE`] or end the stream.
pub fn sse_error(err: &ApiError) -> String {
    sse_data(&ErrorResponse::from(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_event_is_one_line_and_a_blank_line() {
        let event = sse_data(&serde_json::json!({"a": "line\nbreak"}));
        assert_eq!(event, "data: {\"a\":\"line\\nbreak\"}\n\n");
        assert_eq!(event.matches('\n').count(), 2);
    }

    #[test]
    fn done_event() {
        assert_eq!(sse_done(), "data: [DONE]\n\n");
    }

    #[test]
    fn error_event_has_error_key_with_four_fields() {
        let event = sse_error(&ApiError::Overloaded {
            retry_after_secs: None,
        });
        let json = event
            .strip_prefix("data: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let error = value["error"].as_object().unwrap();
        assert_eq!(error.len(), 4);
        assert_eq!(error["type"], "server_error");
        assert!(!event.contains("event:"));
    }

    #[test]
    fn fallback_error_event_is_valid_json() {
        let json = FALLBACK_ERROR_EVENT
            .strip_prefix("data: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["error"]["type"], "server_error");
    }

    #[test]
    fn failing_serialize_becomes_error_event() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        assert_eq!(sse_data(&Bad), FALLBACK_ERROR_EVENT);
    }
}
