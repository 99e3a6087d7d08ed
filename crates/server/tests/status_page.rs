//! The status page a person reads (`GET /status`) and its JSON for
//! machines (`GET /api/status`): each model and backend Operational,
//! Degraded or Down from the live breakers, a 90-day uptime bar per model
//! and backend from the store's incidents, and the incident history. Two
//! upstreams on 127.0.0.1 (the gateway crate's mock): one answers, one
//! fails until its breaker opens.

mod common;
#[path = "../../gateway/tests/support/mod.rs"]
mod upstream;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use server::{AppState, Auth};
use service::Tenant;
use store::Store;

use upstream::{config, model, openai, Behavior, Mock};

const DAY: i64 = 86_400_000;
const MIN: i64 = 60_000;

/// `YYYY-MM-DD` of unix milliseconds, as the JSON reports it (checked
/// against a date this test knows).
fn date(ms: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = ms.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", yoe + era * 400 + i64::from(m <= 2))
}

/// The component section of `name` on the page (its model heading up to
/// the next model).
fn section<'a>(page: &'a str, name: &str) -> &'a str {
    page.split("<section class=\"component\"")
        .find(|s| s.contains(&format!("<span>{name}</span>")))
        .unwrap_or_else(|| panic!("no section for {name}: {page}"))
}

/// The `<ol class="bar">` lists of `html`, each as its list items' text.
fn bars(html: &str) -> Vec<Vec<&str>> {
    html.split("<ol class=\"bar\"")
        .skip(1)
        .map(|bar| {
            let bar = &bar[..bar.find("</ol>").expect("a closed bar")];
            bar.split("<li ").skip(1).collect()
        })
        .collect()
}

#[tokio::test]
async fn the_status_page_shows_states_daily_uptime_and_incidents() {
    assert_eq!(date(1_796_083_200_000), "2026-12-01");
    let steady = Mock::start("steady", Behavior::Ok { words: 2 }).await;
    let flaky = Mock::start("flaky", Behavior::Status(500)).await;
    let gw = config(
        vec![
            model("steady", vec![openai("steady", &steady.base_url(), 0)]),
            model("chat", vec![openai("flaky", &flaky.base_url(), 0)]),
        ],
        600_000,
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let org = store.create_org("local").await.unwrap();
    let project = store.create_project(&org.id, "local").await.unwrap();
    let tenant = Tenant {
        org_id: org.id.clone(),
        project_id: project.id,
        api_key_id: "local".into(),
        admin: true,
        ..Tenant::default()
    };
    let state = AppState::new([])
        .with_gateway(&gw)
        .unwrap()
        .with_auth(Auth::Open {
            store: store.clone(),
            tenant,
        });
    let app = server::router(state.clone());
    let _background = state.start_background();

    // History: flaky was down 11 minutes yesterday (10:00–10:11 UTC),
    // steady two hours forty days ago.
    let now = store::now_ms();
    let today = now.div_euclid(DAY) * DAY;
    let yesterday = today - DAY;
    let old = today - 40 * DAY;
    store
        .open_incident(
            "flaky",
            "chat",
            "5 failures in a row",
            yesterday + 600 * MIN,
        )
        .await
        .unwrap();
    store
        .close_incidents("flaky", yesterday + 611 * MIN)
        .await
        .unwrap();
    store
        .open_incident("steady", "steady", "connection refused", old + 60 * MIN)
        .await
        .unwrap();
    store
        .close_incidents("steady", old + 180 * MIN)
        .await
        .unwrap();

    // Now: flaky fails until its breaker opens (three failures, two calls a
    // request) and an incident opens with it; steady answers.
    for i in 0..2 {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("x-request-id", format!("req-{i}"))
            .body(Body::from(
                json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
                    .to_string(),
            ))
            .unwrap();
        assert_eq!(
            common::send(&app, request).await.status,
            StatusCode::BAD_GATEWAY
        );
    }
    common::wait_incidents(&store, Duration::from_secs(10), "an open incident", |l| {
        l.iter()
            .any(|i| i.backend == "flaky" && i.closed_at.is_none())
    })
    .await;

    // The JSON: the old fields as they were, the new ones beside them.
    let answer = common::get(&app, "/api/status").await;
    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(json["status"], "outage");
    assert_eq!(json["uptime_history"], true);
    let by_name = |name: &str| -> Value {
        json["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no model {name}"))
    };
    let chat = by_name("chat");
    assert_eq!(chat["state"], "down");
    assert_eq!(chat["status"], "down");
    let flaky_json = &chat["backends"][0];
    assert_eq!(flaky_json["id"], "flaky");
    assert_eq!(flaky_json["state"], "open");
    assert_eq!(flaky_json["status"], "down");
    assert!(flaky_json["uptime"]["24h"].as_f64().unwrap() <= 100.0);
    for window in ["7d", "30d", "90d"] {
        let up = flaky_json["uptime"][window].as_f64().unwrap();
        assert!(up < 100.0, "{window}: {up}");
    }
    let daily = flaky_json["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 90);
    assert_eq!(chat["daily"].as_array().unwrap().len(), 90);
    let day = |days: &[Value], date: &str| -> Value {
        days.iter()
            .find(|d| d["date"] == date)
            .cloned()
            .unwrap_or_else(|| panic!("no day {date} in {days:?}"))
    };
    let y = day(daily, &date(yesterday));
    assert_eq!(y["down_ms"], 11 * MIN);
    assert_eq!(y["uptime"], 99.236);
    assert_eq!(day(chat["daily"].as_array().unwrap(), &date(yesterday)), y);
    let steady_json = by_name("steady");
    assert_eq!(steady_json["state"], "up");
    assert_eq!(steady_json["status"], "operational");
    assert_eq!(steady_json["backends"][0]["status"], "operational");
    let steady_daily = steady_json["backends"][0]["daily"].as_array().unwrap();
    assert_eq!(day(steady_daily, &date(old))["down_ms"], 120 * MIN);
    assert_eq!(day(steady_daily, &date(yesterday))["down_ms"], 0);
    assert_eq!(json["incidents"]["open"][0]["backend"], "flaky");
    assert_eq!(json["incidents"]["recent"][0]["duration_s"], 660);

    // The page.
    let answer = common::get(&app, "/status").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = answer.text();
    assert!(
        page.contains("<title>1 model down · Parlance status</title>"),
        "{page}"
    );
    assert!(page.contains("<h1>Parlance status</h1>"));
    assert!(page.contains("prefers-color-scheme:dark"));
    assert!(!page.contains("<script"));
    let down = "<span class=\"badge down\"><span aria-hidden=\"true\">✕</span> Down</span>";
    let up =
        "<span class=\"badge operational\"><span aria-hidden=\"true\">✓</span> Operational</span>";
    let chat_html = section(&page, "chat");
    assert!(
        chat_html.contains(&format!("<span>chat</span> {down}")),
        "{chat_html}"
    );
    assert!(
        chat_html.contains(&format!("flaky</span> {down}")),
        "{chat_html}"
    );
    assert!(!chat_html.contains("Operational"), "{chat_html}");
    let steady_html = section(&page, "steady");
    assert!(steady_html.contains(&format!("<span>steady</span> {up}")));
    assert!(!steady_html.contains("Down<"), "{steady_html}");
    // A bar of 90 days for each model and each backend, each day labelled.
    let all = bars(&page);
    assert_eq!(all.len(), 4);
    for bar in &all {
        assert_eq!(bar.len(), 90);
        assert!(bar
            .iter()
            .all(|cell| cell.contains("title=\"") && cell.contains("<span class=\"vh\">")));
    }
    let label = format!("{}: 99.2% up, 11 min down", date(yesterday));
    assert_eq!(
        bars(chat_html)
            .iter()
            .filter(|bar| bar[88]
                == format!(
                    "class=\"some\" title=\"{label}\"><span class=\"vh\">{label}</span></li>"
                ))
            .count(),
        2,
        "the model's bar and its backend's: {chat_html}"
    );
    let old_label = format!("{}: 91.6% up, 2 h down", date(old));
    assert!(steady_html.contains(&format!("class=\"much\" title=\"{old_label}\"")));
    assert!(steady_html.contains(&format!("{}: 100% up, no downtime", date(yesterday))));
    // The incident history, newest first, with durations in words.
    let history = &page[page.find("Incident history").unwrap()..];
    let ongoing = history.find("ongoing").expect("the open incident");
    let eleven = history
        .find("<td>11 min</td><td>flaky</td><td>chat</td><td>5 failures in a row</td>")
        .expect("yesterday's incident");
    let two_hours = history
        .find("<td>2 h</td><td>steady</td><td>steady</td><td>connection refused</td>")
        .expect("the old incident");
    assert!(ongoing < eleven && eleven < two_hours, "{history}");
    assert!(history.contains(&format!(
        "<time datetime=\"{}T10:00:00Z\">{} 10:00 UTC</time>",
        date(yesterday),
        date(yesterday)
    )));
}

#[tokio::test]
async fn without_a_store_the_page_shows_live_states_and_says_history_is_unavailable() {
    let steady = Mock::start("steady", Behavior::Ok { words: 2 }).await;
    let gw = config(
        vec![model(
            "steady",
            vec![openai("steady", &steady.base_url(), 0)],
        )],
        600_000,
    );
    let app = server::router(AppState::new([]).with_gateway(&gw).unwrap());
    let json = common::get(&app, "/api/status").await.json();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["uptime_history"], false);
    let model = &json["models"][0];
    assert_eq!(model["status"], "operational");
    assert_eq!(model["daily"], Value::Null);
    assert_eq!(model["backends"][0]["uptime"], Value::Null);
    assert_eq!(model["backends"][0]["daily"], Value::Null);
    let page = common::get(&app, "/status").await.text();
    assert!(page.contains("Operational"), "{page}");
    assert!(page.contains("All systems operational"));
    assert!(page.contains("Uptime history is unavailable"));
    assert!(page.contains("Incident history is unavailable"));
    assert!(bars(&page).is_empty());
}
