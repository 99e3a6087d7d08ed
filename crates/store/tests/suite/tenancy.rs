//! Migrations, organisations, users and roles, projects, the audit log.

use serde_json::json;
use sqlx::Executor;
use store::{ErrorKind, NewAuditEntry, Role, Store};

use crate::support::Db;

pub async fn migrations_are_idempotent(db: Db) {
    let org = db.store.create_org("acme").await.unwrap();
    db.store.migrate().await.unwrap();
    db.store.migrate().await.unwrap();
    let again = Store::connect(&db.url).await.unwrap();
    assert_eq!(again.get_org(&org.id).await.unwrap(), org);
    again.close().await;
}

pub async fn users_roles_and_passwords(db: Db) {
    let s = &db.store;
    let org = s.create_org("acme").await.unwrap();
    let other = s.create_org("globex").await.unwrap();
    let alice = s
        .create_user("Alice@Example.com", "Alice", "correct horse")
        .await
        .unwrap();
    assert_eq!(alice.email, "alice@example.com");
    let dup = s
        .create_user("alice@example.COM", "A2", "x")
        .await
        .unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::Conflict);
    assert_eq!(
        s.create_user("no-at-sign", "x", "y")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidRequest
    );

    assert_eq!(
        s.verify_password("ALICE@example.com", "correct horse")
            .await
            .unwrap(),
        alice
    );
    let wrong = s
        .verify_password("alice@example.com", "wrong")
        .await
        .unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::Unauthorized);
    let unknown = s.verify_password("bob@example.com", "x").await.unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::Unauthorized);

    s.set_role(&org.id, &alice.id, Role::Admin).await.unwrap();
    assert_eq!(s.get_role(&org.id, &alice.id).await.unwrap(), Role::Admin);
    s.set_role(&org.id, &alice.id, Role::Reader).await.unwrap();
    assert_eq!(s.get_role(&org.id, &alice.id).await.unwrap(), Role::Reader);
    assert_eq!(
        s.get_role(&other.id, &alice.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.list_members(&org.id).await.unwrap(),
        vec![(alice.clone(), Role::Reader)]
    );
    assert!(s.list_members(&other.id).await.unwrap().is_empty());
    assert_eq!(
        s.set_role("org_missing", &alice.id, Role::Owner)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    s.remove_member(&org.id, &alice.id).await.unwrap();
    assert_eq!(
        s.remove_member(&org.id, &alice.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!("owner".parse::<Role>().unwrap(), Role::Owner);
    assert!("root".parse::<Role>().is_err());
}

pub async fn projects_are_isolated_by_org(db: Db) {
    let s = &db.store;
    let (a, pa) = db.org_with_project("a").await;
    let (b, pb) = db.org_with_project("b").await;
    assert_eq!(s.get_project(&a.id, &pa.id).await.unwrap(), pa);
    assert_eq!(
        s.get_project(&b.id, &pa.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(s.list_projects(&a.id).await.unwrap(), vec![pa]);
    assert_eq!(s.list_projects(&b.id).await.unwrap(), vec![pb]);
    assert_eq!(
        s.create_project("org_missing", "x")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

pub async fn audit_log_is_append_only_and_per_org(db: Db) {
    let s = &db.store;
    let a = s.create_org("a").await.unwrap();
    let b = s.create_org("b").await.unwrap();
    let entry = NewAuditEntry {
        org_id: a.id.clone(),
        actor: "user_1".into(),
        action: "api_key.revoked".into(),
        target: "key_1".into(),
        before: Some(json!({"revoked_at": null})),
        after: Some(json!({"revoked_at": 5})),
    };
    let first = s.append_audit(&entry).await.unwrap();
    let second = s
        .append_audit(&NewAuditEntry {
            action: "role.changed".into(),
            before: None,
            ..entry.clone()
        })
        .await
        .unwrap();
    assert!(second > first);
    let listed = s.list_audit(&a.id, None, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].entry, entry);
    assert_eq!(listed[1].entry.before, None);
    assert_eq!(s.list_audit(&a.id, Some(first), 10).await.unwrap().len(), 1);
    assert!(s.list_audit(&b.id, None, 10).await.unwrap().is_empty());

    let mut raw = db.raw().await;
    assert!(raw
        .execute("UPDATE audit_log SET actor = 'x'")
        .await
        .is_err());
    assert!(raw.execute("DELETE FROM audit_log").await.is_err());
    assert_eq!(s.list_audit(&a.id, None, 10).await.unwrap().len(), 2);
}

pub async fn orgs_and_projects_are_found_by_name(db: Db) {
    let s = &db.store;
    assert!(s.list_orgs().await.unwrap().is_empty());
    assert_eq!(s.find_org_by_name("acme").await.unwrap(), None);
    let (acme, acme_default) = db.org_with_project("acme").await;
    // Creation times are in milliseconds: keep the two "twin" orgs apart.
    next_millisecond().await;
    let (twin, twin_default) = db.org_with_project("acme").await;
    next_millisecond().await;
    let globex = s.create_org("globex").await.unwrap();

    // Names are not unique: the oldest wins; names match exactly.
    assert_eq!(
        s.find_org_by_name("acme").await.unwrap(),
        Some(acme.clone())
    );
    assert_eq!(
        s.find_org_by_name("globex").await.unwrap(),
        Some(globex.clone())
    );
    assert_eq!(s.find_org_by_name("ACME").await.unwrap(), None);
    assert_eq!(s.find_org_by_name("acm").await.unwrap(), None);
    assert_eq!(
        s.list_orgs().await.unwrap(),
        vec![acme.clone(), twin.clone(), globex.clone()]
    );

    // Projects by name, inside one organisation only.
    let extra = s.create_project(&acme.id, "extra").await.unwrap();
    assert_eq!(
        s.find_project_by_name(&acme.id, "default").await.unwrap(),
        Some(acme_default)
    );
    assert_eq!(
        s.find_project_by_name(&twin.id, "default").await.unwrap(),
        Some(twin_default)
    );
    assert_eq!(
        s.find_project_by_name(&acme.id, "extra").await.unwrap(),
        Some(extra)
    );
    assert_eq!(
        s.find_project_by_name(&twin.id, "extra").await.unwrap(),
        None
    );
    assert_eq!(
        s.find_project_by_name(&globex.id, "default").await.unwrap(),
        None
    );
    assert_eq!(
        s.find_project_by_name("org_missing", "default")
            .await
            .unwrap(),
        None
    );
}

/// Returns once the store's clock has moved past the current millisecond.
async fn next_millisecond() {
    let start = store::now_ms();
    while store::now_ms() == start {
        tokio::task::yield_now().await;
    }
}

/// Several processes starting at once on a fresh database each ask for the
/// default organisation and project by name: all get the same ones, and
/// only one of each exists. (Each "process" is its own `Store`, with its own
/// connections.)
pub async fn concurrent_first_starts_create_one_org_and_project(db: Db) {
    const STARTS: usize = 8;
    let mut stores = Vec::new();
    for _ in 0..STARTS {
        stores.push(Store::connect(&db.url).await.unwrap());
    }
    // All ask at once, once every one is connected.
    let together = std::sync::Arc::new(tokio::sync::Barrier::new(STARTS));
    let mut starts = Vec::new();
    for store in stores {
        let together = together.clone();
        starts.push(tokio::spawn(async move {
            together.wait().await;
            let org = store.org_named("default").await.unwrap();
            let project = store.project_named(&org.id, "default").await.unwrap();
            store.close().await;
            (org, project)
        }));
    }
    let mut seen = Vec::new();
    for start in starts {
        seen.push(start.await.unwrap());
    }
    let (org, project) = seen[0].clone();
    assert!(
        seen.iter().all(|(o, p)| *o == org && *p == project),
        "{seen:?}"
    );
    let orgs = db.store.list_orgs().await.unwrap();
    assert_eq!(orgs.iter().filter(|o| o.name == "default").count(), 1);
    let projects = db.store.list_projects(&org.id).await.unwrap();
    assert_eq!(projects.iter().filter(|p| p.name == "default").count(), 1);
    // An unknown organisation has no project to make.
    let missing = db.store.project_named("org_missing", "default").await;
    assert_eq!(missing.unwrap_err().kind(), ErrorKind::NotFound);
}
