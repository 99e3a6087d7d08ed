//! Stored responses (the Responses API): written, read back, updated,
//! cancelled and deleted, each only within its organisation AND project.

use store::{ErrorKind, NewStoredResponse};

use crate::support::Db;

fn response(id: &str, previous: Option<&str>) -> NewStoredResponse {
    NewStoredResponse {
        id: id.into(),
        previous_response_id: previous.map(str::to_owned),
        status: "completed".into(),
        response: format!(r#"{{"id":"{id}"}}"#),
        input_items: "[]".into(),
        context: r#"[{"type":"message"}]"#.into(),
        owner: None,
    }
}

pub async fn responses_are_stored_updated_and_deleted(db: Db) {
    let s = &db.store;
    let (org, project) = db.org_with_project("acme").await;
    s.create_response(&org.id, &project.id, &response("resp_1", None))
        .await
        .unwrap();
    s.create_response(&org.id, &project.id, &response("resp_2", Some("resp_1")))
        .await
        .unwrap();
    let second = s
        .get_response(&org.id, &project.id, "resp_2")
        .await
        .unwrap();
    assert_eq!(second.previous_response_id.as_deref(), Some("resp_1"));
    assert_eq!(second.context, r#"[{"type":"message"}]"#);
    assert_eq!(second.status, "completed");

    // A finished response does not move again: the first end wins.
    assert!(!s
        .update_response(&org.id, &project.id, "resp_2", "failed", "{}", None)
        .await
        .unwrap());
    let mut pending = response("resp_3", Some("resp_1"));
    pending.status = "in_progress".into();
    s.create_response(&org.id, &project.id, &pending)
        .await
        .unwrap();
    assert!(!s
        .response_should_stop(&org.id, &project.id, "resp_3")
        .await
        .unwrap());
    assert!(s
        .update_response(
            &org.id,
            &project.id,
            "resp_3",
            "cancelled",
            "{}",
            Some("[]"),
        )
        .await
        .unwrap());
    // Ended: its runner stops.
    assert!(s
        .response_should_stop(&org.id, &project.id, "resp_3")
        .await
        .unwrap());
    let second = s
        .get_response(&org.id, &project.id, "resp_2")
        .await
        .unwrap();
    assert_eq!(second.status, "completed");
    let second = s
        .get_response(&org.id, &project.id, "resp_3")
        .await
        .unwrap();
    assert_eq!(
        (second.status.as_str(), second.response.as_str()),
        ("cancelled", "{}")
    );
    assert_eq!(second.context, "[]");

    let mut running = response("resp_4", None);
    running.status = "queued".into();
    s.create_response(&org.id, &project.id, &running)
        .await
        .unwrap();
    assert!(!s
        .response_should_stop(&org.id, &project.id, "resp_4")
        .await
        .unwrap());
    s.request_response_cancel(&org.id, &project.id, "resp_4")
        .await
        .unwrap();
    assert!(s
        .response_should_stop(&org.id, &project.id, "resp_4")
        .await
        .unwrap());

    s.delete_response(&org.id, &project.id, "resp_1")
        .await
        .unwrap();
    let gone = s.get_response(&org.id, &project.id, "resp_1").await;
    assert_eq!(gone.unwrap_err().kind(), ErrorKind::NotFound);
    let again = s.delete_response(&org.id, &project.id, "resp_1").await;
    assert_eq!(again.unwrap_err().kind(), ErrorKind::NotFound);
    // The continuation keeps its own copy of the conversation.
    assert!(s.get_response(&org.id, &project.id, "resp_2").await.is_ok());
}

pub async fn responses_are_isolated_by_org_and_project(db: Db) {
    let s = &db.store;
    let (acme, acme_project) = db.org_with_project("acme").await;
    let (other, other_project) = db.org_with_project("other").await;
    s.create_response(&acme.id, &acme_project.id, &response("resp_a", None))
        .await
        .unwrap();
    let second_project = s.create_project(&acme.id, "second").await.unwrap();
    for (org, project) in [
        (&other.id, &other_project.id),
        (&acme.id, &second_project.id),
        (&other.id, &acme_project.id),
    ] {
        let read = s.get_response(org, project, "resp_a").await;
        assert_eq!(read.unwrap_err().kind(), ErrorKind::NotFound);
        let update = s
            .update_response(org, project, "resp_a", "failed", "{}", None)
            .await;
        assert_eq!(update.unwrap_err().kind(), ErrorKind::NotFound);
        let cancel = s.request_response_cancel(org, project, "resp_a").await;
        assert_eq!(cancel.unwrap_err().kind(), ErrorKind::NotFound);
        let delete = s.delete_response(org, project, "resp_a").await;
        assert_eq!(delete.unwrap_err().kind(), ErrorKind::NotFound);
    }
    let kept = s
        .get_response(&acme.id, &acme_project.id, "resp_a")
        .await
        .unwrap();
    assert_eq!(kept.status, "completed");
}

/// The ledger keeps each row's endpoint, and the usage API groups by it,
/// from the rollups (hour buckets) and from the ledger (minute buckets of a
/// short range) alike.
pub async fn usage_is_grouped_by_endpoint(db: Db) {
    use store::{BucketWidth, GroupBy, UsageFilter, UsageQuery};
    const T0: i64 = 1_704_067_200_000;
    let s = &db.store;
    let rows = [
        ("r1", "/v1/chat/completions", 1),
        ("r2", "/v1/responses", 10),
        ("r3", "/v1/responses", 100),
        ("r4", "/v1/messages", 1_000),
    ];
    for (id, endpoint, tokens) in rows {
        let usage = store::NewUsage {
            endpoint: endpoint.into(),
            prompt_tokens: tokens,
            cached_tokens: 0,
            ..crate::ledger::usage("org_e", id, T0 + tokens)
        };
        s.record_usage(&usage).await.unwrap();
    }
    let record = s.get_usage("org_e", "r2").await.unwrap();
    assert_eq!(record.usage.endpoint, "/v1/responses");
    for width in [BucketWidth::Hour, BucketWidth::Minute] {
        let page = s
            .usage(
                "org_e",
                &UsageQuery {
                    start: T0,
                    end: T0 + 3_600_000,
                    bucket_width: width,
                    group_by: vec![GroupBy::Endpoint],
                    filter: UsageFilter::default(),
                    limit: Some(60),
                    page: None,
                },
            )
            .await
            .unwrap();
        let mut by_endpoint: Vec<(Option<String>, i64, i64)> = Vec::new();
        for result in page.buckets.iter().flat_map(|b| &b.results) {
            match by_endpoint.iter_mut().find(|(e, ..)| *e == result.endpoint) {
                Some(entry) => {
                    entry.1 += result.input_tokens;
                    entry.2 += result.num_model_requests;
                }
                None => by_endpoint.push((
                    result.endpoint.clone(),
                    result.input_tokens,
                    result.num_model_requests,
                )),
            }
        }
        by_endpoint.sort();
        assert_eq!(
            by_endpoint,
            [
                (Some("/v1/chat/completions".into()), 1, 1),
                (Some("/v1/messages".into()), 1_000, 1),
                (Some("/v1/responses".into()), 110, 2),
            ],
            "{width:?}"
        );
    }
}
