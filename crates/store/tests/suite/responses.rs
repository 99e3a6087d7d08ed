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

    s.update_response(
        &org.id,
        &project.id,
        "resp_2",
        "cancelled",
        "{}",
        Some("[]"),
    )
    .await
    .unwrap();
    let second = s
        .get_response(&org.id, &project.id, "resp_2")
        .await
        .unwrap();
    assert_eq!(
        (second.status.as_str(), second.response.as_str()),
        ("cancelled", "{}")
    );
    assert_eq!(second.context, "[]");

    assert!(!s
        .response_cancel_requested(&org.id, &project.id, "resp_1")
        .await
        .unwrap());
    s.request_response_cancel(&org.id, &project.id, "resp_1")
        .await
        .unwrap();
    assert!(s
        .response_cancel_requested(&org.id, &project.id, "resp_1")
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
