//! Stored chat completions: create, read back, pages in both orders with
//! model and metadata filters, a bad cursor, metadata replaced, delete,
//! and isolation by organisation AND project.

use std::collections::BTreeMap;

use store::{ErrorKind, NewStoredChatCompletion, StoredChatCompletionQuery};

use crate::support::Db;

fn completion(id: &str, model: &str, pairs: &[(&str, &str)]) -> NewStoredChatCompletion {
    NewStoredChatCompletion {
        id: id.into(),
        model: model.into(),
        completion: format!(r#"{{"id":"{id}","object":"chat.completion"}}"#),
        messages: format!(r#"[{{"id":"{id}-0","role":"user","content":"hi"}}]"#),
        metadata: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn ids(page: &store::StoredChatCompletionPage) -> Vec<&str> {
    page.data.iter().map(|c| c.id.as_str()).collect()
}

/// Waits until the clock has moved past the current millisecond, so that
/// the next write is strictly newer.
async fn tick() {
    let start = store::now_ms();
    while store::now_ms() <= start {
        tokio::task::yield_now().await;
    }
}

pub async fn stored_completions_page_filter_update_and_delete(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    let (o, p) = (org.id.as_str(), project.id.as_str());
    for (id, model, pairs) in [
        ("c1", "m-a", vec![("team", "red")]),
        ("c2", "m-b", vec![("team", "blue")]),
        ("c3", "m-a", vec![("team", "red"), ("tier", "gold")]),
        ("c4", "m-a", vec![]),
    ] {
        s.create_stored_chat_completion(o, p, &completion(id, model, &pairs))
            .await
            .unwrap();
        tick().await;
    }
    let again = s
        .create_stored_chat_completion(o, p, &completion("c1", "m-a", &[]))
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);

    let got = s.get_stored_chat_completion(o, p, "c3").await.unwrap();
    assert_eq!(got.model, "m-a");
    assert!(got.completion.contains("chat.completion"));
    assert!(got.messages.contains("c3-0"));
    assert_eq!(got.metadata.get("tier").map(String::as_str), Some("gold"));

    let query = |limit| StoredChatCompletionQuery {
        limit,
        ..StoredChatCompletionQuery::default()
    };
    let first = s
        .list_stored_chat_completions(o, p, &query(2))
        .await
        .unwrap();
    assert_eq!(ids(&first), ["c1", "c2"]);
    assert!(first.has_more);
    let rest = s
        .list_stored_chat_completions(
            o,
            p,
            &StoredChatCompletionQuery {
                after: Some("c2".into()),
                ..query(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&rest), ["c3", "c4"]);
    assert!(!rest.has_more);
    let newest = s
        .list_stored_chat_completions(
            o,
            p,
            &StoredChatCompletionQuery {
                descending: true,
                after: Some("c3".into()),
                ..query(10)
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&newest), ["c2", "c1"]);
    let none = s
        .list_stored_chat_completions(o, p, &query(0))
        .await
        .unwrap();
    assert!(none.data.is_empty());
    assert!(none.has_more, "an empty page still says more exist");

    let red_a = s
        .list_stored_chat_completions(
            o,
            p,
            &StoredChatCompletionQuery {
                model: Some("m-a".into()),
                metadata: BTreeMap::from([("team".to_string(), "red".to_string())]),
                ..query(10)
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&red_a), ["c1", "c3"]);
    let gold_red = s
        .list_stored_chat_completions(
            o,
            p,
            &StoredChatCompletionQuery {
                metadata: BTreeMap::from([
                    ("team".to_string(), "red".to_string()),
                    ("tier".to_string(), "gold".to_string()),
                ]),
                ..query(10)
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&gold_red), ["c3"]);

    let bad = s
        .list_stored_chat_completions(
            o,
            p,
            &StoredChatCompletionQuery {
                after: Some("nope".into()),
                ..query(10)
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, store::StoreError::InvalidCursor(_)), "{bad}");

    // Metadata is replaced whole, and filters follow it.
    let updated = s
        .update_stored_chat_completion_metadata(
            o,
            p,
            "c1",
            &BTreeMap::from([("team".to_string(), "blue".to_string())]),
        )
        .await
        .unwrap();
    assert_eq!(
        updated.metadata,
        BTreeMap::from([("team".to_string(), "blue".to_string())])
    );
    let blue = s
        .list_stored_chat_completions(
            o,
            p,
            &StoredChatCompletionQuery {
                metadata: BTreeMap::from([("team".to_string(), "blue".to_string())]),
                ..query(10)
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&blue), ["c1", "c2"]);

    s.delete_stored_chat_completion(o, p, "c3").await.unwrap();
    let gone = s.get_stored_chat_completion(o, p, "c3").await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    let twice = s
        .delete_stored_chat_completion(o, p, "c3")
        .await
        .unwrap_err();
    assert_eq!(twice.kind(), ErrorKind::NotFound);
    let all = s
        .list_stored_chat_completions(o, p, &query(10))
        .await
        .unwrap();
    assert_eq!(ids(&all), ["c1", "c2", "c4"]);
    // Its metadata rows went with it: a gold filter finds nothing.
    let gold = s
        .list_stored_chat_completions(
            o,
            p,
            &StoredChatCompletionQuery {
                metadata: BTreeMap::from([("tier".to_string(), "gold".to_string())]),
                ..query(10)
            },
        )
        .await
        .unwrap();
    assert!(gold.data.is_empty());
}

pub async fn stored_completions_are_isolated_by_org_and_project(db: Db) {
    let s = &db.store;
    let (acme, acme_p) = db.org_with_project("acme").await;
    let (other, other_p) = db.org_with_project("other").await;
    let acme_second = s.create_project(&acme.id, "second").await.unwrap();
    s.create_stored_chat_completion(&acme.id, &acme_p.id, &completion("mine", "m", &[]))
        .await
        .unwrap();

    for (org, project) in [(&other.id, &other_p.id), (&acme.id, &acme_second.id)] {
        let read = s
            .get_stored_chat_completion(org, project, "mine")
            .await
            .unwrap_err();
        assert_eq!(read.kind(), ErrorKind::NotFound);
        let update = s
            .update_stored_chat_completion_metadata(org, project, "mine", &BTreeMap::new())
            .await
            .unwrap_err();
        assert_eq!(update.kind(), ErrorKind::NotFound);
        let delete = s
            .delete_stored_chat_completion(org, project, "mine")
            .await
            .unwrap_err();
        assert_eq!(delete.kind(), ErrorKind::NotFound);
        let page = s
            .list_stored_chat_completions(
                org,
                project,
                &StoredChatCompletionQuery {
                    limit: 10,
                    ..StoredChatCompletionQuery::default()
                },
            )
            .await
            .unwrap();
        assert!(page.data.is_empty());
        // Another tenant's id is no cursor either.
        let cursor = s
            .list_stored_chat_completions(
                org,
                project,
                &StoredChatCompletionQuery {
                    after: Some("mine".into()),
                    limit: 10,
                    ..StoredChatCompletionQuery::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(cursor, store::StoreError::InvalidCursor(_)));
    }
    assert!(s
        .get_stored_chat_completion(&acme.id, &acme_p.id, "mine")
        .await
        .is_ok());
}
