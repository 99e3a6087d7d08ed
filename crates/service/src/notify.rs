//! Notices for operators: a budget's soft limit reached. Each is logged
//! (`warn`) and, when a webhook is configured, posted to it as JSON.
//!
//! The webhook is a plain `http://host[:port]/path` URL (an internal
//! relay, a chat-ops bridge): the post is one HTTP/1.1 request with a 10 s
//! time limit, made once; a failure is logged and never affects the request
//! that triggered it. TLS endpoints are reached through such a relay.

use std::time::Duration;

use serde_json::json;
use store::SoftLimitReached;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The time limit of one webhook post.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs the notice and posts it to `webhook`, if given.
pub async fn soft_limit_reached(webhook: Option<&str>, notice: &SoftLimitReached) {
    let budget = &notice.budget;
    tracing::warn!(
        org_id = %budget.org_id,
        scope = budget.scope.as_str(),
        scope_id = %budget.scope_id,
        period = %notice.period,
        spent = notice.spent,
        soft_limit = budget.soft_limit,
        "budget soft limit reached"
    );
    let Some(url) = webhook else {
        return;
    };
    let body = json!({
        "type": "budget.soft_limit_reached",
        "organization_id": budget.org_id,
        "scope": budget.scope.as_str(),
        "scope_id": budget.scope_id,
        "kind": budget.kind.as_str(),
        "period": notice.period,
        "spent_usd": billing::Money::from_i64_units(notice.spent).to_decimal_string(),
        "soft_limit_usd": budget.soft_limit.map(|n| billing::Money::from_i64_units(n).to_decimal_string()),
        "hard_limit_usd": budget.hard_limit.map(|n| billing::Money::from_i64_units(n).to_decimal_string()),
    });
    match tokio::time::timeout(WEBHOOK_TIMEOUT, post_json(url, &body.to_string())).await {
        Ok(Ok(status)) if (200..300).contains(&status) => {}
        Ok(Ok(status)) => tracing::warn!(%url, status, "soft-limit webhook answered an error"),
        Ok(Err(err)) => tracing::warn!(%url, error = %err, "soft-limit webhook failed"),
        Err(_) => tracing::warn!(%url, "soft-limit webhook timed out"),
    }
}

/// `(host:port, path)` of a plain `http://` URL.
fn split_http_url(url: &str) -> std::io::Result<(String, String)> {
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_owned());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("the webhook must be an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid("the webhook URL needs a host and no credentials"));
    }
    let host_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((host_port, path.to_owned()))
}

/// Posts `body` as JSON; answers the response's status code.
async fn post_json(url: &str, body: &str) -> std::io::Result<u16> {
    let (host_port, path) = split_http_url(url)?;
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port.as_str(), |(h, _)| h);
    let mut stream = tokio::net::TcpStream::connect(&host_port).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: parlance\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 8192 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        assert_eq!(
            split_http_url("http://hooks.internal:9000/budget").unwrap(),
            ("hooks.internal:9000".to_owned(), "/budget".to_owned())
        );
        assert_eq!(
            split_http_url("http://relay").unwrap(),
            ("relay:80".to_owned(), "/".to_owned())
        );
        assert!(split_http_url("https://x").is_err());
        assert!(split_http_url("http://u:p@x/").is_err());
    }

    #[tokio::test]
    async fn posts_json_and_reads_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).contains("}") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let status = post_json(&format!("http://{addr}/hook"), "{\"a\":1}")
            .await
            .unwrap();
        assert_eq!(status, 204);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"));
        assert!(request.ends_with("{\"a\":1}"));
    }
}
