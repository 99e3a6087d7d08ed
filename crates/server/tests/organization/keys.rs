//! Key management and model access through the admin API: pagination of
//! lists, the key life cycle (create, list, rotate, revoke) and its audit
//! trail without secrets, and `allowed_models` hiding other models (with and
//! without the real model served). Set-up is the parent test's.

use super::*;

#[tokio::test]
async fn projects_and_keys_page_with_limit_and_after() {
    let w = world().await;
    for name in ["x", "y"] {
        w.store.create_project(&w.a.id, name).await.unwrap();
    }
    let first = get(
        &w.app,
        "/v1/organization/projects?limit=3",
        &w.a.admin_secret,
    )
    .await
    .json();
    assert_eq!(first["object"], "list");
    assert_eq!(first["data"].as_array().unwrap().len(), 3);
    assert_eq!(first["has_more"], true);
    assert_eq!(first["data"][0]["object"], "organization.project");
    let after = first["last_id"].as_str().unwrap();
    let rest = get(
        &w.app,
        &format!("/v1/organization/projects?limit=3&after={after}"),
        &w.a.admin_secret,
    )
    .await
    .json();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
}

#[tokio::test]
async fn key_lifecycle_is_audited_without_secrets() {
    let w = world().await;
    let keys = format!("/v1/organization/projects/{}/api_keys", w.a.project);
    let body = json!({"name": "ci", "allowed_models": ["m1"], "rpm_limit": 10});
    let created = call(&w.app, Method::POST, &keys, &w.a.admin_secret, Some(body)).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let created = created.json();
    let secret = created["value"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-"));
    assert_eq!(created["object"], "organization.project.api_key");
    assert_eq!(
        created["redacted_value"],
        format!("sk-…{}", &secret[secret.len() - 4..])
    );
    assert_eq!(created["allowed_models"], json!(["m1"]));
    assert_eq!(created["rpm_limit"], 10);

    let listed = get(&w.app, &keys, &w.a.admin_secret).await;
    assert!(!listed.text().contains(&secret));
    let ids: Vec<Value> = listed.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].clone())
        .collect();
    assert_eq!(ids, [json!(w.a.project_key), json!(id)]);
    assert_eq!(
        get(&w.app, "/v1/models", &secret).await.status,
        StatusCode::OK
    );

    let rotated = call(
        &w.app,
        Method::POST,
        &format!("{keys}/{id}/rotate"),
        &w.a.admin_secret,
        None,
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let rotated = rotated.json();
    let new_secret = rotated["value"].as_str().unwrap().to_owned();
    let new_id = rotated["id"].as_str().unwrap().to_owned();
    assert_eq!(rotated["allowed_models"], json!(["m1"]));
    assert_eq!(
        get(&w.app, "/v1/models", &secret).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&w.app, "/v1/models", &new_secret).await.status,
        StatusCode::OK
    );
    let again = call(
        &w.app,
        Method::POST,
        &format!("{keys}/{id}/rotate"),
        &w.a.admin_secret,
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let old = get(&w.app, &format!("{keys}/{id}"), &w.a.admin_secret)
        .await
        .json();
    assert_eq!(old["status"], "revoked");

    let deleted = call(
        &w.app,
        Method::DELETE,
        &format!("{keys}/{new_id}"),
        &w.a.admin_secret,
        None,
    )
    .await;
    assert_eq!(
        deleted.json(),
        json!({"object": "organization.project.api_key.deleted", "id": new_id, "deleted": true})
    );
    assert_eq!(
        get(&w.app, "/v1/models", &new_secret).await.status,
        StatusCode::UNAUTHORIZED
    );

    let made = call(
        &w.app,
        Method::POST,
        "/v1/organization/admin_api_keys",
        &w.a.admin_secret,
        Some(json!({"name": "ops"})),
    )
    .await
    .json();
    assert_eq!(made["object"], "organization.admin_api_key");
    let admin_secret = made["value"].as_str().unwrap();
    assert_eq!(
        get(&w.app, "/v1/organization/projects", admin_secret)
            .await
            .status,
        StatusCode::OK
    );

    let audit = get(&w.app, "/v1/organization/audit_logs", &w.a.admin_secret).await;
    let text = audit.text();
    for s in [&secret, &new_secret, &admin_secret.to_owned()] {
        assert!(!text.contains(s.as_str()), "the audit log holds a secret");
    }
    let audit = audit.json();
    let types: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "api_key.created",
            "api_key.rotated",
            "api_key.revoked",
            "api_key.created"
        ]
    );
    let rotation = &audit["data"][1];
    assert_eq!(
        rotation["actor"],
        json!({"type": "api_key", "id": w.a.admin_key})
    );
    assert_eq!(rotation["before"]["id"], id.as_str());
    assert!(rotation["before"]["revoked_at"].is_i64());
    assert_eq!(rotation["after"]["id"], new_id.as_str());
    assert!(rotation["effective_at"].as_i64().unwrap() > JAN);
    // Paged by `after`.
    let after = audit["data"][1]["id"].as_str().unwrap();
    let rest = get(
        &w.app,
        &format!("/v1/organization/audit_logs?limit=1&after={after}"),
        &w.a.admin_secret,
    )
    .await
    .json();
    assert_eq!(rest["data"][0]["type"], "api_key.revoked");
    assert_eq!(rest["has_more"], true);
    let csv = get(
        &w.app,
        "/v1/organization/audit_logs/export",
        &w.a.admin_secret,
    )
    .await;
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(csv.text().lines().count(), 5);
}

#[tokio::test]
async fn a_key_limited_to_some_models_is_told_others_do_not_exist() {
    let w = world().await;
    let new = NewApiKey {
        project_id: w.a.project.clone(),
        allowed_models: Some(vec!["m1".into()]),
        ..NewApiKey::default()
    };
    let (_, secret) = w.store.create_key(&w.a.id, &new).await.unwrap();
    let chat = json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]});
    let completion = json!({"model": "smollm2", "prompt": "hi"});
    for (path, body) in [
        ("/v1/chat/completions", chat),
        ("/v1/completions", completion),
    ] {
        let answer = call(&w.app, Method::POST, path, secret.expose(), Some(body)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        let error = answer.error();
        assert_eq!(error["code"], "model_not_found");
        assert_eq!(error["param"], "model");
        assert_eq!(
            error["message"],
            "The model `smollm2` does not exist or you do not have access to it."
        );
    }
    let answer = get(&w.app, "/v1/models/smollm2", secret.expose()).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

/// With the real model served: a key allowed only another model neither sees
/// it listed nor may retrieve or use it; a key allowed it sees it.
#[tokio::test]
async fn allowed_models_filter_the_served_models() {
    let w = world().await;
    let state =
        AppState::new([(common::MODEL.to_owned(), common::engine())]).with_auth(Auth::Keys {
            store: w.store.clone(),
            admin: None,
        });
    let app = server::router(state);
    let key = |models: Vec<&str>| NewApiKey {
        project_id: w.a.project.clone(),
        allowed_models: Some(models.into_iter().map(str::to_owned).collect()),
        ..NewApiKey::default()
    };
    let (_, other) = w
        .store
        .create_key(&w.a.id, &key(vec!["other"]))
        .await
        .unwrap();
    let (_, allowed) = w
        .store
        .create_key(&w.a.id, &key(vec![common::MODEL]))
        .await
        .unwrap();
    let listed = get(&app, "/v1/models", other.expose()).await.json();
    assert_eq!(listed["data"], json!([]));
    let path = format!("/v1/models/{}", common::MODEL);
    assert_eq!(
        get(&app, &path, other.expose()).await.status,
        StatusCode::NOT_FOUND
    );
    let chat = json!({"model": common::MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1});
    let answer = call(
        &app,
        Method::POST,
        "/v1/chat/completions",
        other.expose(),
        Some(chat),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error()["code"], "model_not_found");
    let listed = get(&app, "/v1/models", allowed.expose()).await.json();
    assert_eq!(listed["data"][0]["id"], common::MODEL);
    assert_eq!(
        get(&app, &path, &w.a.project_secret).await.status,
        StatusCode::OK
    );
}
