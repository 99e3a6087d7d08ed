//! The web app's files, embedded in the binary at build time (no Node.js
//! needed to build or run): `GET /` is the page, `GET /assets/…` its
//! scripts, styles and the vendored libraries (crates/server/web/vendor,
//! unmodified from npm; see its VERSIONS).
//!
//! Every page carries a strict Content-Security-Policy: scripts only from
//! this origin (`script-src 'self'`, plus the hash of the page's one inline
//! element, its import map, which is data and not code), no inline
//! styles or scripts, no plugins, no framing, no foreign connections.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file: its path under `/assets/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $kind:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            content_type: $kind,
            bytes: include_bytes!(concat!("../../../web/", $path)),
        }),*]
    };
}

static ASSETS: &[Asset] = assets! {
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "chat.js" => "text/javascript; charset=utf-8",
    "developer.js" => "text/javascript; charset=utf-8",
    "admin.js" => "text/javascript; charset=utf-8",
    "render.js" => "text/javascript; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "vendor/VERSIONS" => "text/plain; charset=utf-8",
    "vendor/preact/preact.module.js" => "text/javascript; charset=utf-8",
    "vendor/preact/hooks.module.js" => "text/javascript; charset=utf-8",
    "vendor/preact/LICENSE" => "text/plain; charset=utf-8",
    "vendor/htm/htm.module.js" => "text/javascript; charset=utf-8",
    "vendor/htm/LICENSE" => "text/plain; charset=utf-8",
    "vendor/marked/marked.esm.js" => "text/javascript; charset=utf-8",
    "vendor/marked/LICENSE" => "text/plain; charset=utf-8",
    "vendor/dompurify/purify.es.mjs" => "text/javascript; charset=utf-8",
    "vendor/dompurify/LICENSE" => "text/plain; charset=utf-8",
    "vendor/highlight/highlight.min.js" => "text/javascript; charset=utf-8",
    "vendor/highlight/github.min.css" => "text/css; charset=utf-8",
    "vendor/highlight/github-dark.min.css" => "text/css; charset=utf-8",
    "vendor/highlight/LICENSE" => "text/plain; charset=utf-8",
    "vendor/katex/katex.mjs" => "text/javascript; charset=utf-8",
    "vendor/katex/LICENSE" => "text/plain; charset=utf-8",
};

/// The page: the same for every route of the app (it routes by `#/…`).
static INDEX: &str = include_str!("../../../web/index.html");

/// The Content-Security-Policy of the page.
pub fn content_security_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let hash = import_map(INDEX)
            .map(|map| format!(" 'sha256-{}'", base64(&Sha256::digest(map.as_bytes()))))
            .unwrap_or_default();
        format!(
            "default-src 'self'; script-src 'self'{hash}; style-src 'self'; \
             img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
    })
}

/// The text inside the page's `<script type="importmap">`, as the browser
/// hashes it.
fn import_map(page: &str) -> Option<&str> {
    let open = r#"<script type="importmap">"#;
    let start = page.find(open)? + open.len();
    let len = page[start..].find("</script>")?;
    Some(&page[start..start + len])
}

/// Standard base64 with padding (for the CSP hash).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `GET /`: the app's page.
pub async fn index() -> Response {
    let mut response = (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        INDEX,
    )
        .into_response();
    secure_headers(&mut response);
    response
}

/// `GET /assets/{path}`: one embedded file, or the 404 error object.
pub async fn asset(Path(path): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) else {
        return crate::ServerError::from(api::ApiError::NotFound {
            message: format!("No asset /assets/{path}."),
        })
        .into_response();
    };
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static(asset.content_type))],
        asset.bytes,
    )
        .into_response();
    secure_headers(&mut response);
    response
}

fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(content_security_policy()) {
        headers.insert(CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn the_policy_allows_the_import_map_and_no_other_inline_script() {
        let map = import_map(INDEX).expect("the page has an import map");
        assert!(map.contains("preact"));
        let policy = content_security_policy();
        assert!(policy.contains("script-src 'self' 'sha256-"));
        assert!(!policy.contains("unsafe-inline"));
        assert!(!policy.contains("unsafe-eval"));
        // The import map is the page's only inline script.
        assert_eq!(INDEX.matches("<script").count(), 2, "import map + app.js");
        assert!(INDEX.contains(r#"<script type="module" src="/assets/app.js">"#));
    }

    #[test]
    fn every_vendored_library_ships_its_licence() {
        for dir in ["preact", "htm", "marked", "dompurify", "highlight", "katex"] {
            let licence = format!("vendor/{dir}/LICENSE");
            assert!(ASSETS.iter().any(|a| a.path == licence), "{licence}");
        }
    }
}
