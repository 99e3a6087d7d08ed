//! HTTP plumbing shared by the upstream backends: the client (rustls with
//! the `ring` provider), sending with a response-head timeout, turning
//! statuses and transport errors into typed [`BackendError`]s, reading
//! `retry-after`, and turning a body into a stream of SSE events.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, Response, StatusCode};

use crate::error::{BackendError, FailureKind};
use crate::sse::{SseDecoder, SseEvent};

/// An HTTP client whose connection attempts give up after `connect`.
pub fn client(connect: Duration) -> Result<Client, String> {
    Client::builder()
        .connect_timeout(connect)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|err| format!("cannot build the HTTP client: {err}"))
}

/// Sends `request` and waits for the response head at most `headers`.
/// A non-success status becomes the matching [`BackendError`].
pub async fn send(request: RequestBuilder, headers: Duration) -> Result<Response, BackendError> {
    let response = match tokio::time::timeout(headers, request.send()).await {
        Err(_) => {
            return Err(BackendError::new(
                FailureKind::HeadersTimeout,
                format!("no response head within {} ms", headers.as_millis()),
            ))
        }
        Ok(Err(err)) => return Err(transport_error(&err)),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    // The error body is for logs (and, for a rejected request, the client):
    // read a bounded amount, with the same patience as for the head.
    let body = match tokio::time::timeout(headers, response.bytes()).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned(),
        _ => String::new(),
    };
    Err(status_error(status, retry_after, &body))
}

/// The failure for an upstream answering `status`.
pub fn status_error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> BackendError {
    let code = status.as_u16();
    let kind = match code {
        429 => FailureKind::RateLimited { retry_after },
        // Our credentials, a timeout upstream, or a conflict: the backend's
        // problem (or a transient one), not the client's.
        401 | 403 | 408 | 409 => FailureKind::Status { status: code },
        400..=499 => FailureKind::Rejected { status: code },
        _ => FailureKind::Status { status: code },
    };
    let detail = match kind {
        FailureKind::Rejected { .. } => upstream_message(body)
            .unwrap_or_else(|| format!("the upstream rejected the request with status {code}")),
        _ => format!(
            "status {code}: {}",
            body.chars().take(300).collect::<String>()
        ),
    };
    // A 400 naming its parameter reaches the client naming it too.
    if code == 400 {
        if let Some(param) = upstream_param(body) {
            return BackendError::rejected(api::ApiError::InvalidRequest {
                message: detail,
                param: Some(param),
                code: None,
            });
        }
    }
    BackendError::new(kind, detail)
}

/// The `error.param` of an OpenAI-style error body.
fn upstream_param(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value
        .get("error")?
        .get("param")?
        .as_str()
        .map(str::to_owned)
}

/// The `error.message` of an OpenAI- or Anthropic-style error body.
pub fn upstream_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value
        .get("error")?
        .get("message")?
        .as_str()
        .map(str::to_owned)
}

/// `retry-after-ms`, else `retry-after` in seconds (the HTTP-date form is
/// not honoured: it needs a clock agreement we cannot check).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| -> Option<f64> {
        let value = headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()?;
        (value.is_finite() && value >= 0.0).then_some(value)
    };
    if let Some(ms) = number("retry-after-ms") {
        return Some(Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0));
    }
    number("retry-after").map(|secs| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// The failure for a transport error (before or during the body).
pub fn transport_error(err: &reqwest::Error) -> BackendError {
    let kind = if err.is_connect() {
        FailureKind::Connect
    } else if err.is_timeout() {
        FailureKind::HeadersTimeout
    } else if err.is_decode() {
        FailureKind::Decode
    } else {
        FailureKind::Dropped
    };
    BackendError::new(kind, format!("{err:#}"))
}

/// Reads a whole body within `limit` and decodes it as JSON `T`.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    response: Response,
    limit: Duration,
) -> Result<T, BackendError> {
    let bytes = match tokio::time::timeout(limit, response.bytes()).await {
        Err(_) => {
            return Err(BackendError::new(
                FailureKind::RequestTimeout,
                format!("the answer did not arrive within {} ms", limit.as_millis()),
            ))
        }
        Ok(Err(err)) => {
            let mut failure = transport_error(&err);
            if failure.kind != FailureKind::Decode {
                failure.kind = FailureKind::Dropped;
            }
            return Err(failure);
        }
        Ok(Ok(bytes)) => bytes,
    };
    serde_json::from_slice(&bytes).map_err(|err| {
        BackendError::new(
            FailureKind::Decode,
            format!(
                "undecodable answer ({err}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        )
    })
}

/// The body of `response` as SSE events. A transport error mid-body
/// becomes one `Err(Dropped)` item; the stream ends when the body does.
pub fn sse_events(response: Response) -> BoxStream<'static, Result<SseEvent, BackendError>> {
    let bytes = response.bytes_stream();
    stream::unfold(
        (bytes, SseDecoder::new(), false),
        |(mut bytes, mut decoder, failed)| async move {
            if failed {
                return None;
            }
            match bytes.next().await {
                None => None,
                Some(Ok(piece)) => {
                    let events = decoder.push(&piece);
                    Some((
                        stream::iter(events.into_iter().map(Ok)).boxed(),
                        (bytes, decoder, false),
                    ))
                }
                Some(Err(err)) => {
                    let failure =
                        BackendError::new(FailureKind::Dropped, format!("stream broke: {err:#}"));
                    Some((stream::iter([Err(failure)]).boxed(), (bytes, decoder, true)))
                }
            }
        },
    )
    .flatten()
    .boxed()
}

/// Joins `base` and `path` with exactly one `/` between them.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
    }

    #[test]
    fn retry_after_ignores_dates_and_garbage() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("-3"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn statuses_map_to_kinds() {
        let kind = |code| status_error(StatusCode::from_u16(code).unwrap(), None, "").kind;
        assert_eq!(kind(400), FailureKind::Rejected { status: 400 });
        assert_eq!(kind(401), FailureKind::Status { status: 401 });
        assert_eq!(kind(429), FailureKind::RateLimited { retry_after: None });
        assert_eq!(kind(503), FailureKind::Status { status: 503 });
        assert_eq!(kind(529), FailureKind::Status { status: 529 });
    }

    #[test]
    fn rejected_keeps_the_upstream_message() {
        let err = status_error(
            StatusCode::BAD_REQUEST,
            None,
            r#"{"error":{"message":"bad temperature","type":"invalid_request_error"}}"#,
        );
        assert_eq!(err.detail, "bad temperature");
    }

    #[test]
    fn a_400_keeps_the_upstream_param() {
        let err = status_error(
            StatusCode::BAD_REQUEST,
            None,
            r#"{"error":{"message":"bad dimensions","param":"dimensions"}}"#,
        );
        assert_eq!(err.kind, FailureKind::Rejected { status: 400 });
        let client = err.client_error.expect("a client error");
        assert_eq!(client.param(), Some("dimensions"));
    }

    #[test]
    fn join_has_one_slash() {
        assert_eq!(join("http://a/v1/", "/models"), "http://a/v1/models");
        assert_eq!(join("http://a/v1", "models"), "http://a/v1/models");
    }
}
