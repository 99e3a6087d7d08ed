//! The organisation admin API over the in-process router and a real SQLite
//! store holding two organisations, A and B, each with an admin key and a
//! project key: route by route, a project key gets 403 and A's admin key gets
//! 404 (never B's data) for every resource of B; the usage, costs and invoice
//! answers computed from ledger rows agree to the picodollar; pagination;
//! bad parameters are 400s naming `param`; key management is audited; and a
//! key's `allowed_models` hides every other model.

mod common;
#[path = "organization/keys.rs"]
mod keys;

use axum::http::{Method, StatusCode};
use axum::Router;
use billing::Money;
use common::{call, Answer};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use server::{AppState, Auth};
use store::{KeyKind, NewApiKey, NewUsage, Store};

/// 2026-01-01T00:00:00Z in unix seconds.
const JAN: i64 = 1_767_225_600;
const DAY: i64 = 86_400;
/// A cost that an `f64` could not carry exactly: $999.999999999999.
const BIG_COST: i64 = 999_999_999_999_999;

struct Org {
    id: String,
    project: String,
    admin_key: String,
    admin_secret: String,
    project_key: String,
    project_secret: String,
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    app: Router,
    a: Org,
    b: Org,
    /// A's second project.
    a2: String,
}

async fn org(store: &Store, name: &str) -> Org {
    let org = store.create_org(name).await.unwrap();
    let project = store.create_project(&org.id, "main").await.unwrap();
    let new = |kind| NewApiKey {
        project_id: project.id.clone(),
        name: format!("{name}-{kind:?}"),
        kind,
        ..NewApiKey::default()
    };
    let (admin, admin_secret) = store
        .create_key(&org.id, &new(KeyKind::Admin))
        .await
        .unwrap();
    let (key, secret) = store
        .create_key(&org.id, &new(KeyKind::Project))
        .await
        .unwrap();
    Org {
        id: org.id,
        project: project.id,
        admin_key: admin.id,
        admin_secret: admin_secret.expose().to_owned(),
        project_key: key.id,
        project_secret: secret.expose().to_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn usage(
    store: &Store,
    org: &str,
    request: &str,
    project: &str,
    key: &str,
    model: &str,
    tokens: (i64, i64, i64),
    cost: i64,
    at_secs: i64,
) {
    let row = NewUsage {
        endpoint: String::new(),
        request_id: request.into(),
        org_id: org.into(),
        project_id: Some(project.into()),
        api_key_id: Some(key.into()),
        model: model.into(),
        backend: "local".into(),
        prompt_tokens: tokens.0,
        cached_tokens: tokens.1,
        completion_tokens: tokens.2,
        cost,
        latency_ms: 5,
        status: "ok".into(),
        created_at: at_secs * 1000,
        ..NewUsage::default()
    };
    store.record_usage(&row).await.unwrap();
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let a = org(&store, "org-a").await;
    let b = org(&store, "org-b").await;
    let a2 = store.create_project(&a.id, "second").await.unwrap().id;
    let (pa, ka) = (a.project.as_str(), a.project_key.as_str());
    usage(
        &store,
        &a.id,
        "r1",
        pa,
        ka,
        "m1",
        (100, 0, 20),
        1_234_567,
        JAN + 36_000,
    )
    .await;
    usage(
        &store,
        &a.id,
        "r2",
        pa,
        ka,
        "m2",
        (50, 10, 5),
        1,
        JAN + 36_030,
    )
    .await;
    usage(
        &store,
        &a.id,
        "r3",
        &a2,
        ka,
        "m1",
        (7, 0, 3),
        BIG_COST,
        JAN + DAY + 43_200,
    )
    .await;
    usage(
        &store,
        &a.id,
        "r4",
        pa,
        ka,
        "m1",
        (1, 0, 1),
        5,
        JAN + 31 * DAY,
    )
    .await;
    let (pb, kb) = (b.project.as_str(), b.project_key.as_str());
    usage(
        &store,
        &b.id,
        "r1",
        pb,
        kb,
        "m1",
        (9, 0, 9),
        42,
        JAN + 36_000,
    )
    .await;
    let state = AppState::new([]).with_auth(Auth::Keys {
        store: store.clone(),
        admin: None,
    });
    World {
        _dir: dir,
        app: server::router(state),
        store,
        a,
        b,
        a2,
    }
}

async fn get(app: &Router, path: &str, key: &str) -> Answer {
    call(app, Method::GET, path, key, None).await
}

/// Every admin route of organisation `o`'s resources, as (method, path).
fn routes_of(o: &Org) -> Vec<(Method, String)> {
    let (p, k, ak) = (&o.project, &o.project_key, &o.admin_key);
    vec![
        (Method::GET, format!("/v1/organization/projects/{p}")),
        (
            Method::GET,
            format!("/v1/organization/projects/{p}/api_keys"),
        ),
        (
            Method::POST,
            format!("/v1/organization/projects/{p}/api_keys"),
        ),
        (
            Method::GET,
            format!("/v1/organization/projects/{p}/api_keys/{k}"),
        ),
        (
            Method::DELETE,
            format!("/v1/organization/projects/{p}/api_keys/{k}"),
        ),
        (
            Method::POST,
            format!("/v1/organization/projects/{p}/api_keys/{k}/rotate"),
        ),
        (Method::GET, format!("/v1/organization/admin_api_keys/{ak}")),
        (
            Method::DELETE,
            format!("/v1/organization/admin_api_keys/{ak}"),
        ),
        (
            Method::POST,
            format!("/v1/organization/admin_api_keys/{ak}/rotate"),
        ),
    ]
}

/// The routes that are not about one resource.
fn org_wide_routes() -> Vec<(Method, String)> {
    vec![
        (
            Method::GET,
            format!("/v1/organization/usage/completions?start_time={JAN}"),
        ),
        (
            Method::GET,
            format!("/v1/organization/costs?start_time={JAN}"),
        ),
        (Method::GET, "/v1/organization/projects".into()),
        (Method::GET, "/v1/organization/admin_api_keys".into()),
        (Method::POST, "/v1/organization/admin_api_keys".into()),
        (Method::GET, "/v1/organization/audit_logs".into()),
        (Method::GET, "/v1/organization/audit_logs/export".into()),
        (Method::GET, "/v1/organization/invoices/2026-01".into()),
        (Method::GET, "/organization/projects".into()),
    ]
}

#[tokio::test]
async fn project_keys_get_403_on_every_admin_route() {
    let w = world().await;
    let mut all = routes_of(&w.a);
    all.extend(routes_of(&w.b));
    all.extend(org_wide_routes());
    for (method, path) in all {
        let answer = call(&w.app, method.clone(), &path, &w.a.project_secret, None).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            answer.text()
        );
        let error = answer.error();
        assert_eq!(error["type"], "permission_error", "{method} {path}");
        assert!(error["message"].as_str().unwrap().contains("admin"));
    }
    // Nothing was changed by the refused calls.
    let key = w.store.get_key(&w.a.id, &w.a.project_key).await.unwrap();
    assert!(key.revoked_at.is_none());
}

#[tokio::test]
async fn another_orgs_resources_are_404_route_by_route() {
    let w = world().await;
    for (method, path) in routes_of(&w.b) {
        let answer = call(
            &w.app,
            method.clone(),
            &path,
            &w.a.admin_secret,
            Some(json!({})),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            answer.text()
        );
        assert_eq!(answer.error()["type"], "invalid_request_error");
        assert!(
            !answer.text().contains(&w.b.project_key),
            "{path} leaked a key id"
        );
    }
    // B's key named under A's own project is not found either.
    let (pa, kb, ab) = (&w.a.project, &w.b.project_key, &w.b.admin_key);
    for (method, path) in [
        (
            Method::GET,
            format!("/v1/organization/projects/{pa}/api_keys/{kb}"),
        ),
        (
            Method::DELETE,
            format!("/v1/organization/projects/{pa}/api_keys/{kb}"),
        ),
        (
            Method::POST,
            format!("/v1/organization/projects/{pa}/api_keys/{kb}/rotate"),
        ),
        (
            Method::GET,
            format!("/v1/organization/projects/{pa}/api_keys/{ab}"),
        ),
    ] {
        let answer = call(&w.app, method.clone(), &path, &w.a.admin_secret, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    // A's admin key is not a project key, and a project key is not an admin key.
    let (ka, aa) = (&w.a.project_key, &w.a.admin_key);
    let path = format!("/v1/organization/admin_api_keys/{ka}");
    assert_eq!(
        get(&w.app, &path, &w.a.admin_secret).await.status,
        StatusCode::NOT_FOUND
    );
    let path = format!("/v1/organization/projects/{pa}/api_keys/{aa}");
    assert_eq!(
        get(&w.app, &path, &w.a.admin_secret).await.status,
        StatusCode::NOT_FOUND
    );
    // Admin keys filed under B's project cannot be made.
    let body = json!({"project_id": w.b.project});
    let answer = call(
        &w.app,
        Method::POST,
        "/v1/organization/admin_api_keys",
        &w.a.admin_secret,
        Some(body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error()["param"], "project_id");
    // Every key of B is untouched and still works.
    for key in [&w.b.project_key, &w.b.admin_key] {
        assert!(w
            .store
            .get_key(&w.b.id, key)
            .await
            .unwrap()
            .revoked_at
            .is_none());
    }
    let answer = get(&w.app, "/v1/organization/projects", &w.b.admin_secret).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["data"][0]["id"], w.b.project.as_str());
}

#[tokio::test]
async fn lists_and_reports_show_only_the_callers_organisation() {
    let w = world().await;
    // B acts, so that B has audit entries.
    let path = format!("/v1/organization/projects/{}/api_keys", w.b.project);
    let created = call(
        &w.app,
        Method::POST,
        &path,
        &w.b.admin_secret,
        Some(json!({"name": "b2"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let b_key = created.json()["id"].as_str().unwrap().to_owned();

    let projects = get(&w.app, "/v1/organization/projects", &w.a.admin_secret)
        .await
        .json();
    let ids: Vec<&str> = projects["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [w.a.project.as_str(), w.a2.as_str()]);
    let admins = get(&w.app, "/v1/organization/admin_api_keys", &w.a.admin_secret)
        .await
        .json();
    assert_eq!(admins["data"].as_array().unwrap().len(), 1);
    assert_eq!(admins["data"][0]["id"], w.a.admin_key.as_str());

    // Usage and costs filtered by B's ids: A's (empty) data only.
    let (pb, kb) = (&w.b.project, &w.b.project_key);
    for path in [
        format!(
            "/v1/organization/usage/completions?start_time={JAN}&end_time={}&project_ids={pb}",
            JAN + 3 * DAY
        ),
        format!(
            "/v1/organization/usage/completions?start_time={JAN}&end_time={}&api_key_ids[]={kb}",
            JAN + 3 * DAY
        ),
        format!(
            "/v1/organization/costs?start_time={JAN}&end_time={}&project_ids={pb}",
            JAN + 3 * DAY
        ),
    ] {
        let answer = get(&w.app, &path, &w.a.admin_secret).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
        let body = answer.json();
        assert_eq!(body["data"].as_array().unwrap().len(), 3, "{path}");
        for bucket in body["data"].as_array().unwrap() {
            assert_eq!(bucket["results"], json!([]), "{path}");
        }
    }
    // The invoice and audit log of A hold nothing of B.
    let invoice = get(
        &w.app,
        "/v1/organization/invoices/2026-01",
        &w.a.admin_secret,
    )
    .await;
    assert!(!invoice.text().contains(pb.as_str()));
    assert_eq!(invoice.json()["org"], w.a.id.as_str());
    let audit = get(&w.app, "/v1/organization/audit_logs", &w.a.admin_secret).await;
    assert_eq!(audit.json()["data"], json!([]), "{}", audit.text());
    let export = get(
        &w.app,
        "/v1/organization/audit_logs?format=csv",
        &w.a.admin_secret,
    )
    .await;
    assert!(!export.text().contains(&b_key));
    let b_audit = get(&w.app, "/v1/organization/audit_logs", &w.b.admin_secret)
        .await
        .json();
    assert_eq!(b_audit["data"][0]["after"]["id"], b_key.as_str());
}

#[tokio::test]
async fn usage_buckets_group_and_page() {
    let w = world().await;
    let path = format!(
        "/v1/organization/usage/completions?start_time={JAN}&end_time={}&group_by=model&group_by[]=project_id",
        JAN + 3 * DAY
    );
    let answer = get(&w.app, &path, &w.a.admin_secret).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["object"], "page");
    assert_eq!(body["has_more"], false);
    assert_eq!(body["next_page"], Value::Null);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["object"], "bucket");
    assert_eq!(data[0]["start_time"], JAN);
    assert_eq!(data[0]["end_time"], JAN + DAY);
    let day0 = data[0]["results"].as_array().unwrap();
    assert_eq!(day0.len(), 2);
    assert_eq!(
        day0[0],
        json!({
            "object": "organization.usage.completions.result",
            "input_tokens": 100, "output_tokens": 20, "input_cached_tokens": 0,
            "input_audio_tokens": 0, "output_audio_tokens": 0, "num_model_requests": 1,
            "project_id": w.a.project, "user_id": null, "api_key_id": null,
            "model": "m1", "endpoint": null, "batch": null,
        })
    );
    assert_eq!(day0[1]["model"], "m2");
    assert_eq!(day0[1]["input_cached_tokens"], 10);
    assert_eq!(data[1]["results"][0]["project_id"], w.a2.as_str());
    assert_eq!(data[2]["results"], json!([]));

    // Hourly, ungrouped, one bucket a page: follow next_page.
    let base = format!(
        "/v1/organization/usage/completions?start_time={}&end_time={}&bucket_width=1h&limit=1",
        JAN + 9 * 3600,
        JAN + 11 * 3600
    );
    let first = get(&w.app, &base, &w.a.admin_secret).await.json();
    assert_eq!(first["has_more"], true);
    assert_eq!(first["data"][0]["results"], json!([]));
    let next = first["next_page"].as_str().unwrap();
    let second = get(&w.app, &format!("{base}&page={next}"), &w.a.admin_secret)
        .await
        .json();
    assert_eq!(second["has_more"], false);
    assert_eq!(second["data"][0]["start_time"], JAN + 10 * 3600);
    assert_eq!(second["data"][0]["results"][0]["num_model_requests"], 2);
    assert_eq!(second["data"][0]["results"][0]["input_tokens"], 150);
}

#[derive(Deserialize)]
struct CostsPage {
    data: Vec<CostsBucket>,
}

#[derive(Deserialize)]
struct CostsBucket {
    results: Vec<CostsResult>,
}

#[derive(Deserialize)]
struct CostsResult {
    object: String,
    amount: Amount,
    line_item: Option<String>,
    project_id: Option<String>,
}

#[derive(Deserialize)]
struct Amount {
    value: Box<RawValue>,
    currency: String,
}

fn decimal(units: i64) -> String {
    Money::from_i64_units(units).to_decimal_string()
}

#[tokio::test]
async fn costs_usage_and_invoice_agree_exactly() {
    let w = world().await;
    let month_end = JAN + 31 * DAY;
    let path = format!(
        "/v1/organization/costs?start_time={JAN}&end_time={month_end}&bucket_width=1d&group_by=project_id,line_item&limit=31"
    );
    let answer = get(&w.app, &path, &w.a.admin_secret).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.headers["content-type"], "application/json");
    // The amount is a JSON number written from the exact decimal.
    assert!(
        answer
            .text()
            .contains(r#""value":999.999999999999,"currency":"usd""#),
        "{}",
        answer.text()
    );
    let page: CostsPage = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(page.data.len(), 31);
    let mut costs: Vec<(String, String, String)> = Vec::new();
    for result in page.data.iter().flat_map(|b| &b.results) {
        assert_eq!(result.object, "organization.costs.result");
        assert_eq!(result.amount.currency, "usd");
        costs.push((
            result.project_id.clone().unwrap(),
            result.line_item.clone().unwrap(),
            result.amount.value.get().to_owned(),
        ));
    }
    costs.sort();
    let mut expected = vec![
        (w.a.project.clone(), "m1".to_owned(), decimal(1_234_567)),
        (w.a.project.clone(), "m2".to_owned(), decimal(1)),
        (w.a2.clone(), "m1".to_owned(), decimal(BIG_COST)),
    ];
    expected.sort();
    assert_eq!(costs, expected);

    // The invoice: the same lines, the same amounts, an exact total.
    let invoice = get(
        &w.app,
        "/v1/organization/invoices/2026-01",
        &w.a.admin_secret,
    )
    .await;
    assert_eq!(invoice.status, StatusCode::OK, "{}", invoice.text());
    let invoice = invoice.json();
    assert_eq!(invoice["object"], "organization.invoice");
    let mut lines: Vec<(String, String, String)> = invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["project"].as_str().unwrap().to_owned(),
                l["model"].as_str().unwrap().to_owned(),
                l["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    lines.sort();
    assert_eq!(lines, expected);
    assert_eq!(invoice["total"], decimal(1_234_567 + 1 + BIG_COST));

    // The usage API over the month: the same requests and tokens per line.
    let path = format!(
        "/v1/organization/usage/completions?start_time={JAN}&end_time={month_end}&group_by=project_id&group_by=model&limit=31"
    );
    let usage = get(&w.app, &path, &w.a.admin_secret).await.json();
    let mut requests = 0;
    let mut prompt = 0;
    for r in usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap())
    {
        requests += r["num_model_requests"].as_i64().unwrap();
        prompt += r["input_tokens"].as_i64().unwrap();
    }
    let lines = invoice["lines"].as_array().unwrap();
    assert_eq!(
        requests,
        lines
            .iter()
            .map(|l| l["requests"].as_i64().unwrap())
            .sum::<i64>()
    );
    assert_eq!(
        prompt,
        lines
            .iter()
            .map(|l| l["usage"]["prompt_tokens"].as_i64().unwrap())
            .sum::<i64>()
    );

    // CSV: the same amounts.
    let csv = get(
        &w.app,
        "/v1/organization/invoices/2026-01?format=csv",
        &w.a.admin_secret,
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text();
    assert!(text.starts_with(billing::CSV_HEADER));
    assert!(
        text.contains(&format!("{},m1,1,7,0,3,{}", w.a2, decimal(BIG_COST))),
        "{text}"
    );

    // February holds the last row only.
    let feb = get(
        &w.app,
        "/v1/organization/invoices/2026-02",
        &w.a.admin_secret,
    )
    .await
    .json();
    assert_eq!(feb["total"], decimal(5));
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_param() {
    let w = world().await;
    let u = "/v1/organization/usage/completions";
    let c = "/v1/organization/costs";
    let cases = [
        (u.to_owned(), "start_time"),
        (format!("{u}?start_time=abc"), "start_time"),
        (format!("{u}?start_time=-5"), "start_time"),
        (format!("{u}?start_time={JAN}&end_time={JAN}"), "end_time"),
        (
            format!("{u}?start_time={JAN}&bucket_width=2h"),
            "bucket_width",
        ),
        (format!("{u}?start_time={JAN}&group_by=colour"), "group_by"),
        (format!("{u}?start_time={JAN}&limit=0"), "limit"),
        (
            format!("{u}?start_time={JAN}&bucket_width=1d&limit=32"),
            "limit",
        ),
        (format!("{u}?start_time={JAN}&page=nonsense"), "page"),
        (
            format!("{c}?start_time={JAN}&bucket_width=1h"),
            "bucket_width",
        ),
        (format!("{c}?start_time={JAN}&group_by=model"), "group_by"),
        (format!("{c}?start_time={JAN}&limit=181"), "limit"),
        ("/v1/organization/invoices/2026-13".into(), "month"),
        (
            "/v1/organization/invoices/2026-01?format=xml".into(),
            "format",
        ),
        ("/v1/organization/projects?limit=101".into(), "limit"),
        ("/v1/organization/projects?after=proj_nope".into(), "after"),
        ("/v1/organization/audit_logs?after=zz".into(), "after"),
    ];
    for (path, param) in cases {
        let answer = get(&w.app, &path, &w.a.admin_secret).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.text()
        );
        let error = answer.error();
        assert_eq!(error["param"], param, "{path}");
        assert_eq!(error["type"], "invalid_request_error");
    }
    let path = format!("/v1/organization/projects/{}/api_keys", w.a.project);
    for (body, param) in [
        (json!({"expires_at": 1}), "expires_at"),
        (json!({"allowed_models": []}), "allowed_models"),
    ] {
        let answer = call(&w.app, Method::POST, &path, &w.a.admin_secret, Some(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
        assert_eq!(answer.error()["param"], param);
    }
    let answer = call(
        &w.app,
        Method::POST,
        &path,
        &w.a.admin_secret,
        Some(json!({"name": 5})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}
