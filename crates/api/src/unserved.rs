//! Chat parameters OpenAI accepts that Parlance cannot honour, refused by
//! name rather than silently dropped: audio output (`audio`, `modalities`
//! other than `text`), web search (`web_search_options`), moderation
//! (`moderation`) and the deprecated function calling (`functions`, and a
//! `function_call` other than `none`/`auto`; use `tools` and
//! `tool_choice`). `null` (or `modalities: ["text"]`, an empty `functions`)
//! asks for nothing and passes.

use serde_json::Value;

use crate::chat::ChatCompletionRequest;
use crate::error::{ApiError, InvalidCode};

fn refuse(param: &str, why: &str) -> ApiError {
    ApiError::invalid(param, InvalidCode::InvalidValue, why.to_owned())
}

fn set(value: &Option<Value>) -> bool {
    value.as_ref().is_some_and(|value| !value.is_null())
}

/// Refuses what `request` asks for that no model here can do.
pub fn check_chat(request: &ChatCompletionRequest) -> Result<(), ApiError> {
    if set(&request.audio) {
        return Err(refuse(
            "audio",
            "Audio output is not supported: the models served here write text only. Remove \
             `audio`.",
        ));
    }
    if let Some(Value::Array(modalities)) = &request.modalities {
        if modalities.iter().any(|m| m.as_str() != Some("text")) {
            return Err(refuse(
                "modalities",
                "Only the `text` modality is supported: the models served here write text \
                 only.",
            ));
        }
    } else if set(&request.modalities) {
        return Err(refuse(
            "modalities",
            "Invalid 'modalities': expected an array of strings.",
        ));
    }
    if set(&request.web_search_options) {
        return Err(refuse(
            "web_search_options",
            "Web search is not supported here. Remove `web_search_options`.",
        ));
    }
    if set(&request.moderation) {
        return Err(refuse(
            "moderation",
            "Moderating a chat completion in the request is not supported here; call \
             /v1/moderations yourself. Remove `moderation`.",
        ));
    }
    let functions = match &request.functions {
        Some(Value::Array(functions)) => !functions.is_empty(),
        other => set(other),
    };
    if functions {
        return Err(refuse(
            "functions",
            "The deprecated `functions` are not supported; pass them as `tools` (each \
             {\"type\": \"function\", \"function\": {…}}).",
        ));
    }
    match &request.function_call {
        None | Some(Value::Null) => {}
        Some(Value::String(mode)) if mode == "none" || mode == "auto" => {}
        Some(_) => {
            return Err(refuse(
                "function_call",
                "The deprecated `function_call` is not supported; use `tool_choice`.",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ChatCompletionRequest, ApiError> {
        crate::parse_request(body.as_bytes())
    }

    #[test]
    fn unservable_options_are_refused_by_name() {
        let base = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;
        for (extra, param) in [
            (r#""audio":{"format":"wav","voice":"alloy"}"#, "audio"),
            (r#""modalities":["text","audio"]"#, "modalities"),
            (r#""web_search_options":{}"#, "web_search_options"),
            (r#""moderation":{"model":"m"}"#, "moderation"),
            (r#""functions":[{"name":"f"}]"#, "functions"),
            (r#""function_call":{"name":"f"}"#, "function_call"),
        ] {
            let err = parse(&format!("{{{base},{extra}}}")).unwrap_err();
            assert_eq!(err.param(), Some(param), "{extra}");
        }
        for extra in [
            r#""audio":null"#,
            r#""modalities":["text"]"#,
            r#""functions":[]"#,
            r#""function_call":"none""#,
            r#""prediction":{"type":"content","content":"x"}"#,
        ] {
            assert!(parse(&format!("{{{base},{extra}}}")).is_ok(), "{extra}");
        }
    }
}
