//! The fold of the old `local` organisation into the default one: a lone
//! `local` organisation is renamed when the store is opened, one beside
//! `default` is merged into it without losing a row or a unit of money
//! (colliding request ids, memberships, plans, rollup buckets and budgets
//! included), concurrent opens fold once, and folding again changes nothing.

use sqlx::{Connection, Executor};
use store::{
    BucketWidth, BudgetKind, BudgetScope, ErrorKind, GroupBy, LocalOrgFold, NewAuditEntry,
    NewConversation, NewMessage, NewReservation, NewUsage, Role, Store, UsageFilter, UsageQuery,
    DEFAULT_ORG, DEFAULT_PROJECT,
};

use crate::support::{new_key, Db};

const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    store::now_ms()
}

/// Returns once the millisecond clock the store stamps rows with has moved
/// on, so that the next row is strictly newer than the last.
async fn next_millisecond() {
    let start = now_ms();
    while now_ms() == start {
        tokio::task::yield_now().await;
    }
}

/// A usage row of `cost` at `at`, with `prompt = cost`, `completion = 2 cost`.
fn usage(org: &str, id: &str, at: i64, cost: i64) -> NewUsage {
    NewUsage {
        endpoint: String::new(),
        request_id: id.into(),
        org_id: org.into(),
        model: "m".into(),
        backend: "local".into(),
        prompt_tokens: cost,
        cached_tokens: 0,
        completion_tokens: 2 * cost,
        cost,
        status: "ok".into(),
        created_at: at,
        ..NewUsage::default()
    }
}

fn reservation(org: &str, project: &str, key: &str, id: &str, amount: i64) -> NewReservation {
    NewReservation {
        request_id: id.into(),
        org_id: org.into(),
        project_id: Some(project.into()),
        api_key_id: Some(key.into()),
        user_id: None,
        amount,
        created_at: now_ms(),
        model: Some("m".into()),
        backend: Some("local".into()),
        owner: None,
        endpoint: String::new(),
    }
}

/// Reserves and settles a keyed request of `cost`.
async fn spend(s: &Store, org: &str, project: &str, key: &str, id: &str, cost: i64) {
    let r = reservation(org, project, key, id, cost);
    s.reserve(&r).await.unwrap();
    s.settle(&NewUsage {
        endpoint: String::new(),
        project_id: Some(project.into()),
        api_key_id: Some(key.into()),
        ..usage(org, id, r.created_at, cost)
    })
    .await
    .unwrap();
}

/// An organisation's usage summed over the last few days: (requests,
/// input tokens, output tokens, cost, ledger rows). The rollups and the
/// ledger must agree.
async fn totals(s: &Store, org: &str) -> (i64, i64, i64, i64, usize) {
    let query = UsageQuery {
        start: now_ms() - 3 * DAY,
        end: now_ms() + DAY,
        bucket_width: BucketWidth::Day,
        group_by: Vec::new(),
        filter: UsageFilter::default(),
        limit: Some(31),
        page: None,
    };
    let sum = |page: store::UsagePage| {
        page.buckets
            .iter()
            .flat_map(|b| &b.results)
            .fold((0, 0, 0, 0), |t, r| {
                (
                    t.0 + r.num_model_requests,
                    t.1 + r.input_tokens,
                    t.2 + r.output_tokens,
                    t.3 + r.cost,
                )
            })
    };
    let rolled = sum(s.usage(org, &query).await.unwrap());
    let ledger = sum(s.usage_from_ledger(org, &query).await.unwrap());
    assert_eq!(rolled, ledger, "rollups and ledger of {org}");
    let rows = s
        .list_usage(org, i64::MIN, i64::MAX, None, 10_000)
        .await
        .unwrap()
        .len();
    (rolled.0, rolled.1, rolled.2, rolled.3, rows)
}

fn plus(
    a: (i64, i64, i64, i64, usize),
    b: (i64, i64, i64, i64, usize),
) -> (i64, i64, i64, i64, usize) {
    (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3, a.4 + b.4)
}

/// Everything a second fold must leave as it is, as text.
async fn snapshot(s: &Store) -> String {
    let mut out = format!("{:?}\n", s.list_orgs().await.unwrap());
    for org in s.list_orgs().await.unwrap() {
        out += &format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
            totals(s, &org.id).await,
            s.list_projects(&org.id).await.unwrap(),
            s.list_keys(&org.id, None).await.unwrap(),
            s.list_members(&org.id).await.unwrap(),
            s.list_budgets(&org.id).await.unwrap(),
            s.list_reservations(&org.id).await.unwrap(),
            s.list_audit(&org.id, None, 1000).await.unwrap(),
        );
    }
    out
}

/// The actions of the organisation's audit log, oldest first.
async fn actions(s: &Store, org: &str) -> Vec<String> {
    s.list_audit(org, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.entry.action)
        .collect()
}

pub async fn a_lone_local_org_is_renamed_to_default_on_open(db: Db) {
    let s = &db.store;
    let local = s.create_org("local").await.unwrap();
    let project = s.create_project(&local.id, "local").await.unwrap();
    let chat = s.create_project(&local.id, "chat").await.unwrap();
    let (key, secret) = s
        .create_key(&local.id, &new_key(&project, "cli"))
        .await
        .unwrap();
    let alice = s
        .create_user("alice@example.com", "Alice", "pw")
        .await
        .unwrap();
    s.set_role(&local.id, &alice.id, Role::Owner).await.unwrap();
    s.set_budget(
        &local.id,
        BudgetScope::Org,
        &local.id,
        BudgetKind::Monthly,
        Some(1_000_000),
        None,
    )
    .await
    .unwrap();
    s.set_budget(
        &local.id,
        BudgetScope::Project,
        &project.id,
        BudgetKind::Monthly,
        Some(10_000),
        None,
    )
    .await
    .unwrap();
    spend(s, &local.id, &project.id, &key.id, "r1", 120).await;
    spend(s, &local.id, &project.id, &key.id, "r2", 30).await;
    s.record_usage(&NewUsage {
        endpoint: String::new(),
        project_id: Some(chat.id.clone()),
        user_id: Some(alice.id.clone()),
        ..usage(&local.id, "chat-1", now_ms(), 7)
    })
    .await
    .unwrap();
    s.reserve(&reservation(&local.id, &project.id, &key.id, "open", 500))
        .await
        .unwrap();
    s.append_audit(&NewAuditEntry {
        org_id: local.id.clone(),
        actor: alice.id.clone(),
        action: "api_key.created".into(),
        target: key.id.clone(),
        ..NewAuditEntry::default()
    })
    .await
    .unwrap();
    let (_, token) = s.create_session(&local.id, &alice.id, DAY).await.unwrap();
    let before = totals(s, &local.id).await;
    assert_eq!(before, (3, 157, 314, 157, 3));
    let org_budget = s
        .budget_status(&local.id, BudgetScope::Org, &local.id)
        .await
        .unwrap();
    assert_eq!((org_budget.spent, org_budget.reserved), (150, 500));

    // Opening the store (as every process does at start) folds it.
    let reopened = Store::connect(&db.url).await.unwrap();
    let s = &reopened;
    assert_eq!(s.find_org_by_name("local").await.unwrap(), None);
    let default = s.find_org_by_name(DEFAULT_ORG).await.unwrap().unwrap();
    assert_eq!(default.id, local.id, "renamed in place, the id kept");
    assert_eq!(default.name, DEFAULT_ORG);
    assert_eq!(default.created_at, local.created_at);
    assert_eq!(s.list_orgs().await.unwrap(), vec![default.clone()]);
    assert_eq!(totals(s, &default.id).await, before);
    assert_eq!(
        s.authenticate_key(secret.expose()).await.unwrap().org_id,
        default.id
    );
    assert_eq!(
        s.authenticate_session(token.expose()).await.unwrap().org_id,
        default.id
    );
    assert_eq!(
        s.get_role(&default.id, &alice.id).await.unwrap(),
        Role::Owner
    );
    assert_eq!(
        s.budget_status(&default.id, BudgetScope::Org, &default.id)
            .await
            .unwrap(),
        org_budget
    );
    assert_eq!(
        actions(s, &default.id).await,
        ["api_key.created", "organization.renamed"]
    );

    // Folding again changes nothing, through the API or another open.
    let state = snapshot(s).await;
    assert_eq!(s.fold_local_org().await.unwrap(), LocalOrgFold::default());
    let third = Store::connect(&db.url).await.unwrap();
    assert_eq!(snapshot(&third).await, state);
    third.close().await;

    // The open reservation settles into the renamed organisation's budgets.
    s.settle(&NewUsage {
        endpoint: String::new(),
        project_id: Some(project.id.clone()),
        api_key_id: Some(key.id.clone()),
        ..usage(&default.id, "open", now_ms(), 40)
    })
    .await
    .unwrap();
    let status = s
        .budget_status(&default.id, BudgetScope::Org, &default.id)
        .await
        .unwrap();
    assert_eq!((status.spent, status.reserved), (190, 0));
    reopened.close().await;
}

pub async fn local_and_default_merge_without_losing_a_row(db: Db) {
    let s = &db.store;
    let other = s.create_org("acme").await.unwrap();
    s.record_usage(&usage(&other.id, "shared", now_ms(), 1_000))
        .await
        .unwrap();

    // The CLI's organisation.
    let default = s.create_org(DEFAULT_ORG).await.unwrap();
    let pd = s
        .create_project(&default.id, DEFAULT_PROJECT)
        .await
        .unwrap();
    let (kd, secret_d) = s
        .create_key(&default.id, &new_key(&pd, "cli"))
        .await
        .unwrap();
    let alice = s
        .create_user("alice@example.com", "Alice", "pw")
        .await
        .unwrap();
    let bob = s.create_user("bob@example.com", "Bob", "pw").await.unwrap();
    let carol = s
        .create_user("carol@example.com", "Carol", "pw")
        .await
        .unwrap();
    s.set_role(&default.id, &alice.id, Role::Reader)
        .await
        .unwrap();
    s.set_role(&default.id, &carol.id, Role::Admin)
        .await
        .unwrap();
    s.put_plan("free", "{}").await.unwrap();
    s.put_plan("pro", "{}").await.unwrap();
    s.assign_plan(&default.id, &alice.id, "free").await.unwrap();
    s.set_budget(
        &default.id,
        BudgetScope::Org,
        &default.id,
        BudgetKind::Prepaid,
        Some(1_000_000),
        None,
    )
    .await
    .unwrap();
    // The same minute, model and user in both: one rollup bucket each.
    let at = now_ms();
    spend(s, &default.id, &pd.id, &kd.id, "shared", 100).await;
    spend(s, &default.id, &pd.id, &kd.id, "d2", 50).await;
    s.record_usage(&NewUsage {
        endpoint: String::new(),
        user_id: Some(alice.id.clone()),
        ..usage(&default.id, "chat-d", at, 7)
    })
    .await
    .unwrap();
    s.reserve(&reservation(&default.id, &pd.id, &kd.id, "open", 300))
        .await
        .unwrap();

    // The server's and the web app's organisation.
    let local = s.create_org("local").await.unwrap();
    let pl = s.create_project(&local.id, "local").await.unwrap();
    let pc = s.create_project(&local.id, "chat").await.unwrap();
    let pdup = s.create_project(&local.id, DEFAULT_PROJECT).await.unwrap();
    let (kl, secret_l) = s
        .create_key(&local.id, &new_key(&pl, "admin"))
        .await
        .unwrap();
    s.set_role(&local.id, &alice.id, Role::Owner).await.unwrap();
    s.set_role(&local.id, &bob.id, Role::Member).await.unwrap();
    s.set_role(&local.id, &carol.id, Role::Reader)
        .await
        .unwrap();
    next_millisecond().await;
    s.assign_plan(&local.id, &alice.id, "pro").await.unwrap();
    s.assign_plan(&local.id, &bob.id, "free").await.unwrap();
    s.set_budget(
        &local.id,
        BudgetScope::Org,
        &local.id,
        BudgetKind::Prepaid,
        Some(500_000),
        None,
    )
    .await
    .unwrap();
    s.set_budget(
        &local.id,
        BudgetScope::Project,
        &pl.id,
        BudgetKind::Monthly,
        Some(1_000_000),
        None,
    )
    .await
    .unwrap();
    spend(s, &local.id, &pl.id, &kl.id, "shared", 200).await;
    spend(s, &local.id, &pl.id, &kl.id, "l2", 30).await;
    s.record_usage(&NewUsage {
        endpoint: String::new(),
        user_id: Some(alice.id.clone()),
        ..usage(&local.id, "chat-l", at, 11)
    })
    .await
    .unwrap();
    s.reserve(&reservation(&local.id, &pl.id, &kl.id, "open", 400))
        .await
        .unwrap();
    s.reserve(&reservation(&local.id, &pl.id, &kl.id, "l-open", 10))
        .await
        .unwrap();
    let conversation = s
        .create_conversation(
            &local.id,
            &alice.id,
            &NewConversation {
                title: "t".into(),
                model: "m".into(),
                ..NewConversation::default()
            },
        )
        .await
        .unwrap();
    s.append_message(
        &local.id,
        &alice.id,
        &conversation.id,
        &NewMessage {
            role: "assistant".into(),
            content: "hi".into(),
            request_id: Some("shared".into()),
            ..NewMessage::default()
        },
    )
    .await
    .unwrap();
    s.append_audit(&NewAuditEntry {
        org_id: local.id.clone(),
        actor: alice.id.clone(),
        action: "api_key.created".into(),
        target: kl.id.clone(),
        ..NewAuditEntry::default()
    })
    .await
    .unwrap();
    let (_, token) = s.create_session(&local.id, &alice.id, DAY).await.unwrap();

    let before_d = totals(s, &default.id).await;
    let before_l = totals(s, &local.id).await;
    let before_other = totals(s, &other.id).await;
    assert_eq!(before_d, (3, 157, 314, 157, 3));
    assert_eq!(before_l, (3, 241, 482, 241, 3));
    let budget_d = s
        .budget_status(&default.id, BudgetScope::Org, &default.id)
        .await
        .unwrap();
    let budget_l = s
        .budget_status(&local.id, BudgetScope::Org, &local.id)
        .await
        .unwrap();
    assert_eq!((budget_d.spent, budget_d.reserved), (150, 300));
    assert_eq!((budget_l.spent, budget_l.reserved), (230, 410));

    let fold = s.fold_local_org().await.unwrap();
    assert_eq!(
        fold,
        LocalOrgFold {
            default_org_id: Some(default.id.clone()),
            renamed: None,
            merged: vec![local.id.clone()],
            // The ledger row and the open reservation named `shared`/`open`.
            renamed_request_ids: 2,
        }
    );

    // The organisation is gone; the other one is untouched.
    assert_eq!(
        s.get_org(&local.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(s.find_org_by_name("local").await.unwrap(), None);
    assert_eq!(
        s.list_orgs().await.unwrap(),
        vec![other.clone(), default.clone()]
    );
    assert_eq!(totals(s, &other.id).await, before_other);
    assert_eq!(
        s.get_usage(&other.id, "shared").await.unwrap().usage.cost,
        1_000
    );

    // Every request and every unit of money is in the default organisation.
    assert_eq!(totals(s, &default.id).await, plus(before_d, before_l));
    assert_eq!(totals(s, &local.id).await, (0, 0, 0, 0, 0));
    assert_eq!(
        s.get_usage(&default.id, "shared").await.unwrap().usage.cost,
        100
    );
    let moved = s
        .get_usage(&default.id, &format!("shared~{}", local.id))
        .await
        .unwrap()
        .usage;
    assert_eq!((moved.cost, moved.api_key_id), (200, Some(kl.id.clone())));
    assert_eq!(s.get_usage(&default.id, "l2").await.unwrap().usage.cost, 30);
    // The two chat rows of the same minute, model and user: one bucket.
    let by_user = UsageQuery {
        start: at - at.rem_euclid(60_000),
        end: at - at.rem_euclid(60_000) + 60_000,
        bucket_width: BucketWidth::Minute,
        group_by: vec![GroupBy::UserId],
        filter: UsageFilter {
            user_ids: vec![alice.id.clone()],
            ..UsageFilter::default()
        },
        limit: None,
        page: None,
    };
    let page = s.usage(&default.id, &by_user).await.unwrap();
    assert_eq!(
        page,
        s.usage_from_ledger(&default.id, &by_user).await.unwrap()
    );
    let results: Vec<_> = page.buckets.iter().flat_map(|b| &b.results).collect();
    assert_eq!(results.len(), 1);
    assert_eq!((results[0].num_model_requests, results[0].cost), (2, 18));

    // Keys, sessions, people, plans, projects and conversations follow.
    assert_eq!(
        s.authenticate_key(secret_l.expose()).await.unwrap().org_id,
        default.id
    );
    assert_eq!(
        s.authenticate_key(secret_d.expose()).await.unwrap().org_id,
        default.id
    );
    assert_eq!(
        s.authenticate_session(token.expose()).await.unwrap().org_id,
        default.id
    );
    assert_eq!(
        s.get_role(&default.id, &alice.id).await.unwrap(),
        Role::Owner
    );
    assert_eq!(
        s.get_role(&default.id, &bob.id).await.unwrap(),
        Role::Member
    );
    assert_eq!(
        s.get_role(&default.id, &carol.id).await.unwrap(),
        Role::Admin
    );
    assert_eq!(
        s.plan_of(&default.id, &alice.id).await.unwrap().as_deref(),
        Some("pro")
    );
    assert_eq!(
        s.plan_of(&default.id, &bob.id).await.unwrap().as_deref(),
        Some("free")
    );
    let mut projects: Vec<_> = s
        .list_projects(&default.id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    projects.sort();
    let mut expected = vec![pd.id.clone(), pl.id.clone(), pc.id.clone(), pdup.id.clone()];
    expected.sort();
    assert_eq!(projects, expected, "same-named projects both kept");
    assert_eq!(
        s.find_project_by_name(&default.id, DEFAULT_PROJECT)
            .await
            .unwrap()
            .unwrap()
            .id,
        pd.id,
        "the older of two same-named projects is found"
    );
    assert_eq!(
        s.list_keys(&default.id, Some(&pl.id)).await.unwrap().len(),
        1
    );
    let conversations = s
        .list_conversations(&default.id, &alice.id, None, 10)
        .await
        .unwrap();
    assert_eq!(conversations.len(), 1);
    let messages = s
        .list_messages(&default.id, &alice.id, &conversation.id)
        .await
        .unwrap();
    assert_eq!(
        messages[0].request_id,
        Some(format!("shared~{}", local.id)),
        "the message names its renamed ledger row"
    );
    assert_eq!(
        actions(s, &default.id).await,
        ["api_key.created", "organization.merged"]
    );

    // Budgets: the two prepaid credits add up, spend and holds too; the
    // project budget moved with its project.
    let org_budget = s
        .budget_status(&default.id, BudgetScope::Org, &default.id)
        .await
        .unwrap();
    assert_eq!(org_budget.budget.kind, BudgetKind::Prepaid);
    assert_eq!(org_budget.budget.hard_limit, Some(1_500_000));
    assert_eq!((org_budget.spent, org_budget.reserved), (380, 710));
    assert_eq!(
        s.budget_status(&default.id, BudgetScope::Project, &pl.id)
            .await
            .unwrap()
            .budget
            .org_id,
        default.id
    );
    assert!(s.list_budgets(&local.id).await.unwrap().is_empty());
    let mut open: Vec<_> = s
        .list_reservations(&default.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.reserved.request_id, r.reserved.amount))
        .collect();
    open.sort();
    let renamed_open = format!("open~{}", local.id);
    let mut expected = vec![
        ("l-open".to_owned(), 10),
        ("open".to_owned(), 300),
        (renamed_open.clone(), 400),
    ];
    expected.sort();
    assert_eq!(open, expected);

    // The ledger and the audit log refuse changes again.
    let mut raw = db.raw().await;
    for sql in [
        "UPDATE usage_ledger SET cost = 0",
        "DELETE FROM usage_ledger",
        "UPDATE audit_log SET actor = 'x'",
        "DELETE FROM audit_log",
    ] {
        assert!(raw.execute(sql).await.is_err(), "{sql}");
    }
    raw.close().await.unwrap();

    // Folding again changes nothing, through the API or another open.
    let state = snapshot(s).await;
    assert_eq!(s.fold_local_org().await.unwrap(), LocalOrgFold::default());
    let reopened = Store::connect(&db.url).await.unwrap();
    assert_eq!(snapshot(&reopened).await, state);
    reopened.close().await;

    // The moved holds are given back where they were taken.
    for (id, project, key, cost) in [
        ("open", &pd.id, &kd.id, 20),
        (renamed_open.as_str(), &pl.id, &kl.id, 40),
        ("l-open", &pl.id, &kl.id, 1),
    ] {
        s.settle(&NewUsage {
            endpoint: String::new(),
            project_id: Some(project.clone()),
            api_key_id: Some(key.clone()),
            ..usage(&default.id, id, now_ms(), cost)
        })
        .await
        .unwrap();
    }
    let org_budget = s
        .budget_status(&default.id, BudgetScope::Org, &default.id)
        .await
        .unwrap();
    assert_eq!((org_budget.spent, org_budget.reserved), (441, 0));
    let project_budget = s
        .budget_status(&default.id, BudgetScope::Project, &pl.id)
        .await
        .unwrap();
    assert_eq!((project_budget.spent, project_budget.reserved), (271, 0));
}

pub async fn a_kept_monthly_budget_counts_the_merged_months_spend(db: Db) {
    let s = &db.store;
    let default = s.create_org(DEFAULT_ORG).await.unwrap();
    let pd = s
        .create_project(&default.id, DEFAULT_PROJECT)
        .await
        .unwrap();
    let (kd, _) = s
        .create_key(&default.id, &new_key(&pd, "cli"))
        .await
        .unwrap();
    s.set_budget(
        &default.id,
        BudgetScope::Org,
        &default.id,
        BudgetKind::Monthly,
        Some(1_000),
        None,
    )
    .await
    .unwrap();
    spend(s, &default.id, &pd.id, &kd.id, "d1", 100).await;
    // No budget here: this month's 300 were never counted against one, and
    // last month's 500 do not count this month.
    let local = s.create_org("local").await.unwrap();
    s.record_usage(&usage(&local.id, "l1", now_ms(), 300))
        .await
        .unwrap();
    s.record_usage(&usage(&local.id, "l0", now_ms() - 40 * DAY, 500))
        .await
        .unwrap();

    let fold = s.fold_local_org().await.unwrap();
    assert_eq!(fold.merged, vec![local.id.clone()]);
    let status = s
        .budget_status(&default.id, BudgetScope::Org, &default.id)
        .await
        .unwrap();
    assert_eq!((status.spent, status.reserved), (400, 0));
    assert_eq!(
        s.reserve(&reservation(&default.id, &pd.id, &kd.id, "big", 601))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::QuotaExceeded
    );
    s.reserve(&reservation(&default.id, &pd.id, &kd.id, "fits", 600))
        .await
        .unwrap();
    assert_eq!(s.fold_local_org().await.unwrap(), LocalOrgFold::default());
    let status = s
        .budget_status(&default.id, BudgetScope::Org, &default.id)
        .await
        .unwrap();
    assert_eq!((status.spent, status.reserved), (400, 600));
}

pub async fn several_local_orgs_become_one_default(db: Db) {
    let s = &db.store;
    let first = s.create_org("local").await.unwrap();
    next_millisecond().await;
    let second = s.create_org("local").await.unwrap();
    for (org, cost) in [(&first, 10), (&second, 20)] {
        s.record_usage(&usage(&org.id, "same", now_ms(), cost))
            .await
            .unwrap();
    }
    let fold = s.fold_local_org().await.unwrap();
    assert_eq!(
        fold,
        LocalOrgFold {
            default_org_id: Some(first.id.clone()),
            renamed: Some(first.id.clone()),
            merged: vec![second.id.clone()],
            renamed_request_ids: 1,
        }
    );
    let orgs = s.list_orgs().await.unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(
        (orgs[0].id.as_str(), orgs[0].name.as_str()),
        (first.id.as_str(), DEFAULT_ORG)
    );
    assert_eq!(totals(s, &first.id).await, (2, 30, 60, 30, 2));
    assert_eq!(
        actions(s, &first.id).await,
        ["organization.renamed", "organization.merged"]
    );
    assert_eq!(s.fold_local_org().await.unwrap(), LocalOrgFold::default());
}

pub async fn concurrent_opens_fold_once(db: Db) {
    let s = &db.store;
    let default = s.create_org(DEFAULT_ORG).await.unwrap();
    let local = s.create_org("local").await.unwrap();
    for i in 0..20 {
        for (org, cost) in [(&default, 1), (&local, 2)] {
            s.record_usage(&usage(&org.id, &format!("r{i}"), now_ms(), cost))
                .await
                .unwrap();
        }
    }
    let expected = plus(totals(s, &default.id).await, totals(s, &local.id).await);

    let mut tasks = Vec::new();
    for _ in 0..3 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let store = Store::connect(&url).await.unwrap();
            store.close().await;
        }));
    }
    let folds = {
        let s = s.clone();
        tokio::spawn(async move { s.fold_local_org().await.unwrap() })
    };
    for task in tasks {
        task.await.unwrap();
    }
    let fold = folds.await.unwrap();
    assert!(fold == LocalOrgFold::default() || fold.merged == vec![local.id.clone()]);

    assert_eq!(s.list_orgs().await.unwrap(), vec![default.clone()]);
    assert_eq!(totals(s, &default.id).await, expected);
    assert_eq!(
        s.get_usage(&default.id, &format!("r7~{}", local.id))
            .await
            .unwrap()
            .usage
            .cost,
        2
    );
    assert_eq!(
        actions(s, &default.id).await,
        ["organization.merged"],
        "folded exactly once"
    );
}
