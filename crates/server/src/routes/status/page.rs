//! The HTML page (`GET /status`): server-rendered, no script. A banner,
//! each model and its backends with a state badge, facts in words and a
//! 90-day uptime bar, then the incident history table; its style sheet.

use std::fmt::Write as _;

use serde_json::Value;

use super::health::Health;
use super::history::DAYS;
use super::text::{cell, escape, human_duration, percent_text, time_element};

/// A day down this share of it or more is drawn as "much" downtime.
const MUCH_DOWN: f64 = 0.01;

/// The text of a bar's cell: `2026-12-01: 99.2% up, 11 min down`.
fn day_label(day: &Value, today: bool) -> String {
    let down = day["down_ms"].as_i64().unwrap_or(0);
    let date = day["date"].as_str().unwrap_or("");
    let when = if today {
        format!("{date} (today so far)")
    } else {
        date.to_owned()
    };
    if down == 0 {
        format!("{when}: 100% up, no downtime")
    } else {
        let up = day["uptime"].as_f64().unwrap_or(0.0).min(99.99);
        format!(
            "{when}: {} up, {} down",
            percent_text(up, 1),
            human_duration(down)
        )
    }
}

/// A 90-day uptime bar for `name` with its uptime beside it, or a note
/// when there is no history.
fn bar(html: &mut String, name: &str, daily: &Value, uptime: &Value) {
    let Some(days) = daily.as_array() else {
        html.push_str("<p class=\"muted\">Uptime history unavailable.</p>");
        return;
    };
    let down: i64 = days.iter().filter_map(|d| d["down_ms"].as_i64()).sum();
    let total = uptime["90d"].as_f64().unwrap_or(100.0);
    let total = if down > 0 { total.min(99.999) } else { 100.0 };
    let _ = write!(
        html,
        "<div class=\"uptime\"><p class=\"figure\"><strong>{}</strong> uptime over the last {DAYS} days",
        percent_text(total, 2)
    );
    if down > 0 {
        let _ = write!(html, " ({} down)", human_duration(down));
    }
    let _ = write!(
        html,
        "</p><ol class=\"bar\" aria-label=\"{}: uptime per day, last {DAYS} days, oldest first\">",
        escape(name)
    );
    for (i, day) in days.iter().enumerate() {
        let label = escape(&day_label(day, i + 1 == days.len()));
        let down = day["down_ms"].as_i64().unwrap_or(0);
        let level = if down == 0 {
            "none"
        } else if 100.0 - day["uptime"].as_f64().unwrap_or(0.0) < MUCH_DOWN * 100.0 {
            "some"
        } else {
            "much"
        };
        let _ = write!(
            html,
            "<li class=\"{level}\" title=\"{label}\"><span class=\"vh\">{label}</span></li>"
        );
    }
    let _ = write!(
        html,
        "</ol><p class=\"ends\" aria-hidden=\"true\"><span>{DAYS} days ago</span><span>Today</span></p></div>"
    );
}

/// A state badge: symbol and word, coloured.
fn badge(health: Health) -> String {
    format!(
        "<span class=\"badge {}\"><span aria-hidden=\"true\">{}</span> {}</span>",
        health.as_str(),
        health.symbol(),
        health.word()
    )
}

fn kind_words(kind: &str) -> String {
    match kind {
        "local" => "Local engine".to_owned(),
        "openai" => "OpenAI-compatible API".to_owned(),
        "anthropic" => "Anthropic API".to_owned(),
        other => escape(other),
    }
}

/// The facts of one backend, in words.
fn backend_facts(backend: &Value) -> String {
    let mut facts = vec![kind_words(backend["kind"].as_str().unwrap_or(""))];
    facts.push(match backend["latency_ms"].as_f64() {
        Some(ms) => format!("latency {} ms", ms.round()),
        None => "no answers yet".to_owned(),
    });
    let rate = backend["error_rate"].as_f64().unwrap_or(0.0);
    facts.push(if rate > 0.0 {
        format!(
            "{} of recent requests failed",
            percent_text(rate * 100.0, 1)
        )
    } else {
        "no recent failures".to_owned()
    });
    facts.push(format!("{} in flight", cell(&backend["outstanding"])));
    let uptime = &backend["uptime"];
    if uptime.is_object() {
        let windows: Vec<String> = ["24h", "7d", "30d"]
            .iter()
            .filter_map(|w| {
                let up = uptime[*w].as_f64()?;
                Some(format!("{w} {}", percent_text(up, 2)))
            })
            .collect();
        if !windows.is_empty() {
            facts.push(format!("uptime {}", windows.join(", ")));
        }
    }
    facts.join(" · ")
}

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;\
--operational:#1a7f37;--degraded:#9a6700;--down:#cf222e}\
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#f0f6fc;--muted:#9198a1;--line:#3d444d;\
--card:#151b23;--operational:#3fb950;--degraded:#d29922;--down:#f85149}}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--fg);font:1rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\
header,main{max-width:52rem;margin:0 auto;padding:0 1rem}\
h1{font-size:1.75rem;margin:1.5rem 0 .75rem}h2{font-size:1.35rem;margin:2rem 0 .5rem}\
h3{font-size:1.15rem;margin:0}h4{font-size:1rem;margin:0}\
h3,h4{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;gap:.25rem .75rem}\
.muted,.figure,.facts,.ends{color:var(--muted)}\
.banner{font-size:1.2rem;font-weight:600;padding:.75rem 1rem;border:2px solid;border-radius:.5rem;margin:0 0 .5rem}\
.operational{color:var(--operational)}.degraded{color:var(--degraded)}.down{color:var(--down)}\
.badge{font-size:.95rem;font-weight:600;white-space:nowrap;border:1px solid;border-radius:1rem;padding:0 .6rem}\
.component{border:1px solid var(--line);border-radius:.5rem;background:var(--card);padding:1rem;margin:1rem 0}\
.backends{list-style:none;margin:1rem 0 0;padding:0}\
.backends>li{border-top:1px solid var(--line);padding:.75rem 0 0;margin:.75rem 0 0}\
.facts,.why,.figure{margin:.25rem 0;font-size:.95rem}\
.bar{display:grid;grid-template-columns:repeat(90,1fr);gap:1px;height:2.25rem;list-style:none;margin:.25rem 0 0;padding:0}\
.bar li{min-width:0;border-radius:1px;background:var(--operational)}\
.bar li.some{background:var(--degraded);box-shadow:inset 0 .5rem 0 var(--card)}\
.bar li.much{background:var(--down);box-shadow:inset 0 1rem 0 var(--card)}\
.ends{display:flex;justify-content:space-between;font-size:.85rem;margin:0}\
.legend{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;list-style:none;padding:0;font-size:.95rem}\
.swatch{display:inline-block;width:.8rem;height:1.1rem;vertical-align:middle;margin-right:.35rem;border-radius:1px}\
.swatch.none{background:var(--operational)}\
.swatch.some{background:var(--degraded);box-shadow:inset 0 .25rem 0 var(--bg)}\
.swatch.much{background:var(--down);box-shadow:inset 0 .5rem 0 var(--bg)}\
.scroll{overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-size:.95rem}\
caption{text-align:left;color:var(--muted);padding:.25rem 0}\
th,td{text-align:left;vertical-align:top;padding:.4rem .6rem;border-bottom:1px solid var(--line)}\
th{white-space:nowrap}\
.vh{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}\
@media (forced-colors:active){.bar li,.swatch{forced-color-adjust:none;background:CanvasText}\
.bar li.some,.bar li.much,.swatch.some,.swatch.much{background:Highlight}}\
";

/// The page: a banner, each model with its backends (state, facts, bar),
/// and the incident history. `history` is `None` without a store.
pub(super) fn render(snapshot: &Value, history: Option<&[store::Incident]>, now: i64) -> String {
    let models: &[Value] = snapshot["models"].as_array().map_or(&[], Vec::as_slice);
    let count = |h: Health| {
        models
            .iter()
            .filter(|m| Health::parse(m["status"].as_str().unwrap_or("")) == h)
            .count()
    };
    let (down, degraded) = (count(Health::Down), count(Health::Degraded));
    let plural = |n: usize| if n == 1 { "model" } else { "models" };
    let (overall, summary) = match (down, degraded) {
        (0, 0) => (Health::Operational, "All systems operational".to_owned()),
        (0, d) => (Health::Degraded, format!("{d} {} degraded", plural(d))),
        (n, 0) => (Health::Down, format!("{n} {} down", plural(n))),
        (n, d) => (
            Health::Down,
            format!("{n} {} down, {d} degraded", plural(n)),
        ),
    };
    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{summary} · Parlance status</title><style>{STYLE}</style></head><body>\
         <header><h1>Parlance status</h1>\
         <p class=\"banner {}\"><span aria-hidden=\"true\">{}</span> {summary}</p>\
         <p class=\"muted\">As of {}. Reload the page for the latest.</p></header><main>",
        overall.as_str(),
        overall.symbol(),
        time_element(now),
    );
    html.push_str("<section aria-labelledby=\"models\"><h2 id=\"models\">Models</h2>");
    if history.is_none() {
        html.push_str(
            "<p class=\"muted\">Uptime history is unavailable: this server runs without a \
             database, so only the live state is shown.</p>",
        );
    } else {
        let _ = write!(
            html,
            "<p class=\"muted\">Each bar is the last {DAYS} days, one cell per UTC day, oldest \
             first; downtime is the time a backend was refusing requests (a model: all its \
             backends at once). Point at a day for its figures.</p>\
             <ul class=\"legend\" aria-label=\"Legend\">\
             <li><span class=\"swatch none\" aria-hidden=\"true\"></span>No downtime</li>\
             <li><span class=\"swatch some\" aria-hidden=\"true\"></span>Down under 1% of the day</li>\
             <li><span class=\"swatch much\" aria-hidden=\"true\"></span>Down 1% of the day or more</li></ul>"
        );
    }
    if models.is_empty() {
        html.push_str("<p>No models are configured.</p>");
    }
    for (m, model) in models.iter().enumerate() {
        let name = model["name"].as_str().unwrap_or("");
        let health = Health::parse(model["status"].as_str().unwrap_or(""));
        let _ = write!(
            html,
            "<section class=\"component\" aria-labelledby=\"model-{m}\">\
             <h3 id=\"model-{m}\"><span>{}</span> {}</h3>",
            escape(name),
            badge(health)
        );
        let aliases: Vec<String> = model["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(escape))
            .collect();
        if !aliases.is_empty() {
            let _ = write!(
                html,
                "<p class=\"muted\">Also called {}</p>",
                aliases.join(", ")
            );
        }
        if history.is_some() {
            bar(&mut html, name, &model["daily"], &model["uptime"]);
        }
        let backends: &[Value] = model["backends"].as_array().map_or(&[], Vec::as_slice);
        let _ = write!(
            html,
            "<ul class=\"backends\" aria-label=\"Backends of {}\">",
            escape(name)
        );
        for backend in backends {
            let id = backend["id"].as_str().unwrap_or("");
            let health = Health::parse(backend["status"].as_str().unwrap_or(""));
            let _ = write!(
                html,
                "<li><h4><span><span class=\"vh\">Backend </span>{}</span> {}</h4>\
                 <p class=\"facts\">{}</p>",
                escape(id),
                badge(health),
                backend_facts(backend)
            );
            for reason in backend["reasons"].as_array().into_iter().flatten() {
                let _ = write!(html, "<p class=\"why\">{}</p>", cell(reason));
            }
            if history.is_some() {
                bar(&mut html, id, &backend["daily"], &backend["uptime"]);
            }
            html.push_str("</li>");
        }
        html.push_str("</ul></section>");
    }
    html.push_str(
        "</section><section aria-labelledby=\"incidents\"><h2 id=\"incidents\">Incident history</h2>",
    );
    match history {
        None => html.push_str(
            "<p class=\"muted\">Incident history is unavailable: this server runs without a \
             database.</p>",
        ),
        Some([]) => {
            let _ = write!(html, "<p>No incidents in the last {DAYS} days.</p>");
        }
        Some(incidents) => {
            let _ = write!(
                html,
                "<div class=\"scroll\" role=\"region\" aria-labelledby=\"incidents\" tabindex=\"0\">\
                 <table><caption>Incidents of the last {DAYS} days, newest first. Times are UTC.</caption>\
                 <thead><tr><th scope=\"col\">Started</th><th scope=\"col\">Ended</th>\
                 <th scope=\"col\">Duration</th><th scope=\"col\">Backend</th>\
                 <th scope=\"col\">Model</th><th scope=\"col\">Reason</th></tr></thead><tbody>"
            );
            let mut sorted: Vec<&store::Incident> = incidents.iter().collect();
            sorted.sort_by_key(|i| std::cmp::Reverse((i.opened_at, i.id)));
            for i in sorted {
                let ended = match i.closed_at {
                    Some(at) => time_element(at),
                    None => "<strong class=\"down\">ongoing</strong>".to_owned(),
                };
                let mut duration = human_duration(i.closed_at.unwrap_or(now) - i.opened_at);
                if i.closed_at.is_none() {
                    duration.push_str(" so far");
                }
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{ended}</td><td>{duration}</td><td>{}</td><td>{}</td>\
                     <td>{}</td></tr>",
                    time_element(i.opened_at),
                    escape(&i.backend),
                    escape(&i.model),
                    escape(&i.reason),
                );
            }
            html.push_str("</tbody></table></div>");
        }
    }
    html.push_str("</section></main></body></html>");
    html
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn day_labels_read_well() {
        let day = json!({"date": "2026-12-01", "down_ms": 660_000, "uptime": 99.236});
        assert_eq!(day_label(&day, false), "2026-12-01: 99.2% up, 11 min down");
        let day = json!({"date": "2026-12-02", "down_ms": 0, "uptime": 100.0});
        assert_eq!(
            day_label(&day, true),
            "2026-12-02 (today so far): 100% up, no downtime"
        );
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let incident = store::Incident {
            id: 1,
            backend: "b&1".into(),
            model: "<m>".into(),
            reason: "<x>".into(),
            opened_at: 1_000,
            closed_at: Some(2_000),
        };
        let page = render(
            &json!({
                "status": "ok",
                "models": [{"name": "<script>", "status": "operational", "aliases": ["<a>"],
                    "backends": [{"id": "b&1", "kind": "<k>", "status": "degraded",
                        "reasons": ["<r>"], "uptime": null, "daily": null}]}],
            }),
            Some(&[incident]),
            3_000,
        );
        assert!(
            !page.contains("<script>") && !page.contains("<a>"),
            "{page}"
        );
        assert!(!page.contains("<k>") && !page.contains("<r>") && !page.contains("<x>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("b&amp;1"));
        assert!(page.contains("&lt;x&gt;"));
    }
}
