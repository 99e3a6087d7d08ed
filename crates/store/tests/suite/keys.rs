//! API keys: secrets, masking, revocation, rotation, expiry, isolation.

use store::{now_ms, ErrorKind, NewApiKey};

use crate::support::{new_key, Db};

pub async fn key_create_lookup_revoke_and_masking(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (key, secret) = s
        .create_key(&org.id, &new_key(&project, "ci"))
        .await
        .unwrap();
    let secret = secret.expose().to_owned();
    assert!(secret.starts_with("sk-") && secret.len() >= 35, "{secret}");
    assert_eq!(key.redacted, format!("sk-…{}", &secret[secret.len() - 4..]));
    assert!(key.is_active(now_ms()));
    assert_eq!(key.last_used_at, None);

    let found = s.authenticate_key(&secret).await.unwrap();
    assert_eq!(found.id, key.id);
    assert!(found.last_used_at.is_some());
    assert_eq!(
        s.get_key(&org.id, &key.id).await.unwrap().last_used_at,
        found.last_used_at
    );
    assert_eq!(
        s.authenticate_key("sk-not-a-key").await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );

    let listed = s.list_keys(&org.id, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].redacted, key.redacted);
    assert!(!format!("{listed:?}").contains(&secret[3..]));
    assert_eq!(
        s.list_keys(&org.id, Some(&project.id)).await.unwrap().len(),
        1
    );
    assert!(s
        .list_keys(&org.id, Some("proj_other"))
        .await
        .unwrap()
        .is_empty());

    let revoked = s.revoke_key(&org.id, &key.id).await.unwrap();
    let when = revoked.revoked_at.unwrap();
    let err = s.authenticate_key(&secret).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    // Revoking twice keeps the first time.
    assert_eq!(
        s.revoke_key(&org.id, &key.id).await.unwrap().revoked_at,
        Some(when)
    );
    assert_eq!(
        s.create_key(&org.id, &new_key(&project, "x"))
            .await
            .map(|(k, _)| k.project_id)
            .unwrap(),
        project.id
    );
}

pub async fn key_rotation_replaces_the_secret(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let new = NewApiKey {
        allowed_models: Some(vec!["smollm2".into()]),
        expires_at: Some(now_ms() + 3_600_000),
        ..new_key(&project, "prod")
    };
    let (old, old_secret) = s.create_key(&org.id, &new).await.unwrap();
    let (fresh, fresh_secret) = s.rotate_key(&org.id, &old.id).await.unwrap();
    assert_ne!(fresh.id, old.id);
    assert_ne!(fresh_secret, old_secret);
    assert_eq!(
        (
            &fresh.project_id,
            &fresh.name,
            &fresh.allowed_models,
            fresh.expires_at
        ),
        (
            &old.project_id,
            &old.name,
            &old.allowed_models,
            old.expires_at
        )
    );
    assert_eq!(
        s.authenticate_key(old_secret.expose())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        s.authenticate_key(fresh_secret.expose()).await.unwrap().id,
        fresh.id
    );
    assert!(s
        .get_key(&org.id, &old.id)
        .await
        .unwrap()
        .revoked_at
        .is_some());
    assert_eq!(
        s.rotate_key(&org.id, &old.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(s.list_keys(&org.id, None).await.unwrap().len(), 2);
}

pub async fn key_expiry_and_allowed_models(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let expired = NewApiKey {
        expires_at: Some(now_ms() - 1),
        ..new_key(&project, "old")
    };
    let (_, secret) = s.create_key(&org.id, &expired).await.unwrap();
    assert_eq!(
        s.authenticate_key(secret.expose())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthorized
    );
    let limited = NewApiKey {
        expires_at: Some(now_ms() + 60_000),
        allowed_models: Some(vec!["a".into(), "b".into()]),
        ..new_key(&project, "limited")
    };
    let (_, secret) = s.create_key(&org.id, &limited).await.unwrap();
    let key = s.authenticate_key(secret.expose()).await.unwrap();
    assert_eq!(
        key.allowed_models,
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    assert!(key.allows_model("b") && !key.allows_model("c"));
    let (open, _) = s
        .create_key(&org.id, &new_key(&project, "open"))
        .await
        .unwrap();
    assert!(open.allows_model("anything"));
    assert!(!format!("{secret:?}").contains("sk-"));
}

pub async fn keys_are_isolated_by_org(db: Db) {
    let s = &db.store;
    let (a, pa) = db.org_with_project("a").await;
    let (b, pb) = db.org_with_project("b").await;
    let (ka, secret_a) = s.create_key(&a.id, &new_key(&pa, "a")).await.unwrap();
    s.create_key(&b.id, &new_key(&pb, "b")).await.unwrap();

    for err in [
        s.get_key(&b.id, &ka.id).await.unwrap_err(),
        s.revoke_key(&b.id, &ka.id).await.unwrap_err(),
        s.rotate_key(&b.id, &ka.id).await.map(|_| ()).unwrap_err(),
        // A key cannot be made in another organisation's project.
        s.create_key(&b.id, &new_key(&pa, "x"))
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    }
    let listed_b = s.list_keys(&b.id, None).await.unwrap();
    assert_eq!(listed_b.len(), 1);
    assert!(listed_b.iter().all(|k| k.org_id == b.id));
    assert!(s.list_keys(&b.id, Some(&pa.id)).await.unwrap().is_empty());
    // A's key is untouched by B's attempts.
    let still = s.authenticate_key(secret_a.expose()).await.unwrap();
    assert_eq!((still.org_id, still.revoked_at), (a.id, None));
}

pub async fn keys_are_found_and_counted_across_orgs(db: Db) {
    let s = &db.store;
    assert_eq!(s.count_keys().await.unwrap(), 0);
    let (a, pa) = db.org_with_project("a").await;
    let (b, pb) = db.org_with_project("b").await;
    let (ka, _) = s.create_key(&a.id, &new_key(&pa, "a")).await.unwrap();
    let (kb, _) = s.create_key(&b.id, &new_key(&pb, "b")).await.unwrap();
    assert_eq!(s.count_keys().await.unwrap(), 2);

    // The system look-up finds any organisation's key, as get_key does.
    assert_eq!(s.find_key(&ka.id).await.unwrap(), ka);
    assert_eq!(s.find_key(&kb.id).await.unwrap(), kb);
    assert_eq!(
        s.find_key("key_missing").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Revoked and rotated keys still count, and are still found.
    let revoked = s.revoke_key(&a.id, &ka.id).await.unwrap();
    assert_eq!(s.count_keys().await.unwrap(), 2);
    assert_eq!(s.find_key(&ka.id).await.unwrap(), revoked);
    let (rotated, _) = s.rotate_key(&b.id, &kb.id).await.unwrap();
    assert_eq!(s.count_keys().await.unwrap(), 3);
    assert_eq!(s.find_key(&rotated.id).await.unwrap().org_id, b.id);
    assert!(s.find_key(&kb.id).await.unwrap().revoked_at.is_some());
}
