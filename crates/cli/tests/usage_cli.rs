//! The administrative commands through the real binary, on a temporary data
//! directory's SQLite store (no model needed): `keys create --admin` with
//! expiry, models and limits, `keys list`, `keys rotate`, `keys revoke`, and
//! the audit log they leave; `usage`, `invoice` and `audit` output from
//! ledger rows written with the store.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use store::{KeyKind, NewUsage, Store};

/// 2026-01-01T00:00:00Z in unix seconds.
const JAN: i64 = 1_767_225_600;
const BIG_COST: i64 = 999_999_999_999_999;

fn parlance(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parlance"))
        .env("PARLANCE_LOG", "warn")
        .env_remove("PARLANCE_ADMIN_KEY")
        .env_remove("PARLANCE_DATABASE_URL")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

/// Runs a command that must succeed; its stdout.
fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = parlance(data_dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; its stderr.
fn fails(data_dir: &Path, args: &[&str]) -> String {
    let out = parlance(data_dir, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    String::from_utf8(out.stderr).unwrap()
}

/// The one stdout line of `create`/`rotate`: the secret.
fn secret_line(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout:?}");
    assert!(lines[0].starts_with("sk-"), "{stdout:?}");
    lines[0].to_owned()
}

fn with_store<T>(data_dir: &Path, work: impl AsyncFnOnce(&Store) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("parlance.db").display()
        );
        let store = Store::connect(&url).await.unwrap();
        let out = work(&store).await;
        store.close().await;
        out
    })
}

#[test]
fn keys_create_admin_rotate_revoke_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let before = store::now_ms();
    let secret = secret_line(&ok(
        d,
        &[
            "keys",
            "create",
            "--org",
            "acme",
            "--project",
            "web",
            "--name",
            "ops",
            "--admin",
            "--expires",
            "30d",
            "--models",
            "m1,m2",
            "--rpm",
            "5",
            "--tpm",
            "100",
        ],
    ));
    let key = with_store(d, async |s| s.authenticate_key(&secret).await.unwrap());
    assert_eq!(key.kind, KeyKind::Admin);
    assert_eq!(
        key.allowed_models,
        Some(vec!["m1".to_owned(), "m2".to_owned()])
    );
    assert_eq!((key.limits.rpm, key.limits.tpm), (Some(5), Some(100)));
    let month_ms = 30 * 86_400_000;
    let expires = key.expires_at.unwrap();
    assert!(expires >= before + month_ms && expires <= store::now_ms() + month_ms);

    let list = ok(d, &["keys", "list"]);
    assert!(list.starts_with("ID\tORG\tPROJECT\tNAME\tKIND\t"), "{list}");
    let row = list.lines().find(|l| l.starts_with(&key.id)).unwrap();
    assert!(row.contains("\tacme\tweb\tops\tadmin\t"), "{row}");
    assert!(row.contains(&format!("sk-…{}", &secret[secret.len() - 4..])));
    assert!(row.ends_with("\tactive"), "{row}");
    assert!(!list.contains(&secret));

    let rotated = secret_line(&ok(d, &["keys", "rotate", &key.id]));
    assert_ne!(rotated, secret);
    let new = with_store(d, async |s| {
        assert!(s.authenticate_key(&secret).await.is_err());
        s.authenticate_key(&rotated).await.unwrap()
    });
    assert_eq!(new.kind, KeyKind::Admin);
    assert_eq!(new.allowed_models, key.allowed_models);
    assert_eq!(new.expires_at, key.expires_at);
    assert!(fails(d, &["keys", "rotate", &key.id]).contains("revoked"));
    assert!(fails(d, &["keys", "rotate", "key_nope"]).contains("no key"));

    fails(d, &["keys", "create", "--expires", "2000-01-01"]);
    fails(d, &["keys", "create", "--expires", "soon"]);
    ok(d, &["keys", "revoke", &new.id]);
    let list = ok(d, &["keys", "list"]);
    let row = list.lines().find(|l| l.starts_with(&new.id)).unwrap();
    assert!(row.ends_with("\trevoked"), "{row}");

    let json = ok(d, &["audit", "--org", "acme", "--json"]);
    for s in [&secret, &rotated] {
        assert!(!json.contains(s.as_str()), "the audit log holds a secret");
    }
    let audit: Value = serde_json::from_str(&json).unwrap();
    let data = audit["data"].as_array().unwrap();
    let types: Vec<&str> = data.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["api_key.created", "api_key.rotated", "api_key.revoked"]
    );
    for entry in data {
        assert_eq!(entry["actor"]["type"], "cli");
        assert!(entry["effective_at"].as_i64().unwrap() * 1000 >= before - 1000);
    }
    assert_eq!(data[0]["after"]["kind"], "admin");
    assert_eq!(data[1]["before"]["id"], key.id.as_str());
    assert_eq!(data[1]["after"]["id"], new.id.as_str());
    assert!(data[2]["after"]["revoked_at"].is_i64());
    let table = ok(d, &["audit", "--org", "acme"]);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table
        .lines()
        .nth(2)
        .unwrap()
        .contains("\tcli\tapi_key.rotated\t"));
    assert!(fails(d, &["audit", "--org", "nobody"]).contains("no organisation"));
}

#[test]
fn usage_and_invoice_print_the_ledger_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    secret_line(&ok(
        d,
        &["keys", "create", "--org", "acme", "--project", "web"],
    ));
    let project = with_store(d, async |s| {
        let org = s.find_org_by_name("acme").await.unwrap().unwrap();
        let project = s
            .find_project_by_name(&org.id, "web")
            .await
            .unwrap()
            .unwrap();
        let rows = [
            ("r1", "m1", 100, 20, 1_234_567, JAN + 3600),
            ("r2", "m2", 50, 5, 1, JAN + 7200),
            ("r3", "m1", 7, 3, BIG_COST, JAN + 86_400 + 60),
            ("r4", "m1", 1, 1, 5, JAN + 31 * 86_400),
        ];
        for (id, model, prompt, completion, cost, at) in rows {
            let row = NewUsage {
                endpoint: String::new(),
                request_id: id.into(),
                org_id: org.id.clone(),
                project_id: Some(project.id.clone()),
                model: model.into(),
                backend: "local".into(),
                prompt_tokens: prompt,
                completion_tokens: completion,
                cost,
                status: "ok".into(),
                created_at: at * 1000,
                ..NewUsage::default()
            };
            s.record_usage(&row).await.unwrap();
        }
        project.id
    });

    let args = [
        "usage",
        "--org",
        "acme",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-03",
    ];
    let json = ok(d, &[&args[..], &["--group-by", "model", "--json"]].concat());
    let page: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(page["object"], "page");
    assert_eq!(page["has_more"], false);
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["start_time"], JAN);
    assert_eq!(data[0]["results"][0]["model"], "m1");
    assert_eq!(data[0]["results"][0]["input_tokens"], 100);
    assert_eq!(data[0]["results"][1]["model"], "m2");
    assert_eq!(data[1]["results"][0]["output_tokens"], 3);

    let table = ok(d, &[&args[..], &["--group-by", "model,project"]].concat());
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap(),
        "START\tproject_id\tmodel\tREQUESTS\tINPUT\tCACHED\tOUTPUT\tCOST_USD"
    );
    assert_eq!(
        lines.next().unwrap(),
        format!("{JAN}\t{project}\tm1\t1\t100\t0\t20\t0.000001234567")
    );
    assert!(table.contains("\t999.999999999999\n"), "{table}");
    fails(d, &["usage", "--org", "acme", "--bucket", "2h"]);
    fails(d, &["usage", "--org", "acme", "--group-by", "colour"]);
    fails(
        d,
        &[
            "usage",
            "--org",
            "acme",
            "--from",
            "2026-01-03",
            "--to",
            "2026-01-01",
        ],
    );

    let invoice: Value =
        serde_json::from_str(&ok(d, &["invoice", "--org", "acme", "--month", "2026-01"])).unwrap();
    assert_eq!(invoice["object"], "organization.invoice");
    assert_eq!(invoice["total"], "1000.000001234567");
    let lines = invoice["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["model"], "m1");
    assert_eq!(lines[0]["requests"], 2);
    assert_eq!(lines[0]["amount"], "1000.000001234566");
    let csv = ok(
        d,
        &[
            "invoice", "--org", "acme", "--month", "2026-01", "--format", "csv",
        ],
    );
    assert_eq!(
        csv,
        format!(
            "{}\r\n{project},m1,2,107,0,23,1000.000001234566\r\n{project},m2,1,50,0,5,0.000000000001\r\n",
            "project,model,requests,prompt_tokens,cached_tokens,completion_tokens,amount_usd"
        )
    );
    let feb: Value =
        serde_json::from_str(&ok(d, &["invoice", "--org", "acme", "--month", "2026-02"])).unwrap();
    assert_eq!(feb["total"], "0.000000000005");
    fails(d, &["invoice", "--org", "acme", "--month", "2026-13"]);
    fails(d, &["invoice", "--org", "acme", "--format", "xml"]);
    fails(d, &["invoice", "--org", "nobody"]);
}

#[test]
fn budgets_prices_plans_and_limits_are_set_shown_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    secret_line(&ok(
        d,
        &["keys", "create", "--org", "acme", "--project", "web"],
    ));
    let key_id = with_store(d, async |s| {
        let org = s.find_org_by_name("acme").await.unwrap().unwrap();
        s.list_keys(&org.id, None).await.unwrap()[0].id.clone()
    });

    // Budgets: exact dollars in, exact dollars out.
    let shown = ok(
        d,
        &[
            "budget",
            "set",
            "--org",
            "acme",
            "--project",
            "web",
            "--hard",
            "25.50",
            "--soft",
            "20",
        ],
    );
    assert!(shown.contains("hard $25.500000"), "{shown}");
    assert!(shown.contains("available $25.500000"), "{shown}");
    let err = fails(d, &["budget", "set", "--org", "acme", "--hard=-1"]);
    assert!(err.contains("non-negative"), "{err}");
    fails(
        d,
        &["budget", "top-up", "--org", "acme", "--project", "web", "5"],
    );
    ok(
        d,
        &[
            "budget",
            "set",
            "--org",
            "acme",
            "--key",
            &key_id,
            "--prepaid",
            "--hard",
            "1",
        ],
    );
    let shown = ok(
        d,
        &[
            "budget", "top-up", "--org", "acme", "--key", &key_id, "0.25",
        ],
    );
    assert!(shown.contains("available $1.250000"), "{shown}");
    assert_eq!(
        ok(d, &["budget", "show", "--org", "acme"]).lines().count(),
        2
    );
    ok(
        d,
        &["budget", "delete", "--org", "acme", "--project", "web"],
    );
    assert_eq!(
        ok(d, &["budget", "show", "--org", "acme"]).lines().count(),
        1
    );

    // Prices: exact per token; a price that is not is refused.
    let shown = ok(
        d,
        &[
            "prices", "set", "m1", "--per", "1m", "--input", "0.15", "--output", "0.6",
        ],
    );
    assert!(shown.starts_with("m1\t"), "{shown}");
    assert!(shown.contains("$0.000150"), "{shown}");
    fails(
        d,
        &[
            "prices",
            "set",
            "m1",
            "--input",
            "0.0000000000001",
            "--output",
            "1",
        ],
    );
    assert_eq!(ok(d, &["prices", "list"]).lines().count(), 2);

    // Plans: built-in ones listed, a new one defined.
    let plans = ok(d, &["plan", "list"]);
    assert!(
        plans.contains("plus\tPlus\t$20.000000/month\t10000000 tokens/month"),
        "{plans}"
    );
    ok(
        d,
        &[
            "plan",
            "define",
            "team",
            "--price",
            "30",
            "--messages",
            "500",
            "--models",
            "m1,m2",
        ],
    );
    assert!(ok(d, &["plan", "list"])
        .contains("team\tteam\t$30.000000/month\t500 messages/month\tm1,m2"));
    fails(
        d,
        &[
            "plan",
            "assign",
            "--org",
            "acme",
            "--user",
            "nobody@example.com",
            "team",
        ],
    );

    // Rate limits of a key and a project.
    ok(
        d,
        &["keys", "limits", &key_id, "--rpm", "60", "--tpm", "1000"],
    );
    ok(
        d,
        &["projects", "limits", "--org", "acme", "web", "--rpm", "600"],
    );
    let projects = ok(d, &["projects", "list", "--org", "acme"]);
    assert!(projects.contains("\tweb\t600\tdefault"), "{projects}");
    let (key, actions) = with_store(d, async |s| {
        let org = s.find_org_by_name("acme").await.unwrap().unwrap();
        let key = s.get_key(&org.id, &key_id).await.unwrap();
        let audit = s.list_audit(&org.id, None, 100).await.unwrap();
        let actions: Vec<String> = audit.into_iter().map(|e| e.entry.action).collect();
        (key, actions)
    });
    assert_eq!((key.limits.rpm, key.limits.tpm), (Some(60), Some(1000)));
    for action in [
        "budget.set",
        "budget.topped_up",
        "budget.deleted",
        "api_key.limits_changed",
        "project.limits_changed",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} not in {actions:?}"
        );
    }
}
