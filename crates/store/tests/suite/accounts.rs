//! Prices with their history, plans and assignments, and web sessions.

use store::{ErrorKind, NewUsage, Role, StoredPrice, DEFAULT_PRICE_MODEL};

use crate::support::Db;

fn price(model: &str, at: i64, input: i64, output: i64) -> StoredPrice {
    StoredPrice {
        model: model.into(),
        effective_at: at,
        input,
        cached_input: input,
        output,
    }
}

pub async fn prices_apply_from_their_time_and_keep_history(db: Db) {
    let s = &db.store;
    assert_eq!(s.price_at("m", 5_000).await.unwrap(), None);
    s.set_price(&price(DEFAULT_PRICE_MODEL, 0, 1, 2))
        .await
        .unwrap();
    s.set_price(&price("m", 1_000, 10, 30)).await.unwrap();
    s.set_price(&price("m", 2_000, 20, 60)).await.unwrap();
    // Before the model's first price: the default.
    assert_eq!(s.price_at("m", 999).await.unwrap().unwrap().input, 1);
    assert_eq!(s.price_at("m", 1_000).await.unwrap().unwrap().input, 10);
    assert_eq!(s.price_at("m", 1_999).await.unwrap().unwrap().output, 30);
    assert_eq!(s.price_at("m", 2_000).await.unwrap().unwrap().output, 60);
    assert_eq!(
        s.price_at("other", 9_999).await.unwrap().unwrap().model,
        "*"
    );
    assert_eq!(s.list_prices().await.unwrap().len(), 3);
    let err = s.set_price(&price("m", 3_000, -1, 0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
}

pub async fn plans_are_assigned_to_members_and_use_is_counted(db: Db) {
    let s = &db.store;
    let (org, _) = db.org_with_project("acme").await;
    let other = s.create_org("other").await.unwrap();
    let alice = s
        .create_user("alice@example.com", "Alice", "pw-123456")
        .await
        .unwrap();
    s.set_role(&org.id, &alice.id, Role::Member).await.unwrap();
    s.put_plan("plus", "{}").await.unwrap();
    assert_eq!(s.plan_of(&org.id, &alice.id).await.unwrap(), None);
    assert_eq!(
        s.assign_plan(&org.id, &alice.id, "plus").await.unwrap(),
        None
    );
    s.put_plan("team", "{}").await.unwrap();
    assert_eq!(
        s.assign_plan(&org.id, &alice.id, "team")
            .await
            .unwrap()
            .as_deref(),
        Some("plus")
    );
    assert_eq!(
        s.plan_of(&org.id, &alice.id).await.unwrap().as_deref(),
        Some("team")
    );
    // Not a member of the other organisation; an unknown plan.
    let err = s
        .assign_plan(&other.id, &alice.id, "plus")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = s.assign_plan(&org.id, &alice.id, "nope").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(s.list_plans().await.unwrap().len(), 2);

    for (i, at) in [(0, 1_000), (1, 2_000), (2, 9_000)] {
        s.record_usage(&NewUsage {
            endpoint: String::new(),
            request_id: format!("u{i}"),
            org_id: org.id.clone(),
            user_id: Some(alice.id.clone()),
            model: "m".into(),
            backend: "local".into(),
            prompt_tokens: 10,
            completion_tokens: 5,
            status: "ok".into(),
            created_at: at,
            ..NewUsage::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(
        s.user_use(&org.id, &alice.id, 0, 5_000).await.unwrap(),
        (2, 30)
    );
    assert_eq!(
        s.user_use(&other.id, &alice.id, 0, 99_999).await.unwrap(),
        (0, 0)
    );
}

pub async fn sessions_end_on_revoke_and_expiry(db: Db) {
    let s = &db.store;
    let (org, _) = db.org_with_project("acme").await;
    let other = s.create_org("other").await.unwrap();
    let bob = s
        .create_user("bob@example.com", "Bob", "pw-123456")
        .await
        .unwrap();
    s.set_role(&org.id, &bob.id, Role::Member).await.unwrap();
    let (session, token) = s.create_session(&org.id, &bob.id, 60_000).await.unwrap();
    assert!(token.expose().starts_with("sess-"));
    assert!(!format!("{token:?}").contains(token.expose()));
    assert_eq!(
        s.authenticate_session(token.expose()).await.unwrap(),
        session
    );
    assert!(s.revoke_session(token.expose()).await.unwrap());
    assert!(!s.revoke_session(token.expose()).await.unwrap());
    let err = s.authenticate_session(token.expose()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    let err = s.authenticate_session("sess-unknown").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    // Only members get a session.
    let err = s
        .create_session(&other.id, &bob.id, 60_000)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // Expired: a session of 1 ms is over by the time it is checked again.
    let (short, token) = s.create_session(&org.id, &bob.id, 1).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        <= short.expires_at
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    let err = s.authenticate_session(token.expose()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
}
