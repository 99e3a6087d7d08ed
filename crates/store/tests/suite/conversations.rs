//! Conversations and messages: ordering, search, rename, truncate, delete,
//! and isolation by organisation AND user.

use store::{ConversationUpdate, ErrorKind, NewConversation, NewMessage, Role};

use crate::support::Db;

fn conversation(title: &str) -> NewConversation {
    NewConversation {
        title: title.into(),
        model: "smollm2".into(),
        system_prompt: String::new(),
        settings: String::new(),
    }
}

fn message(role: &str, content: &str) -> NewMessage {
    NewMessage {
        role: role.into(),
        content: content.into(),
        ..NewMessage::default()
    }
}

/// Waits until the clock has moved past the current millisecond, so that
/// the next write is strictly newer.
async fn tick() {
    let start = store::now_ms();
    while store::now_ms() <= start {
        tokio::task::yield_now().await;
    }
}

pub async fn conversations_keep_messages_in_order_and_truncate(db: Db) {
    let s = &db.store;
    let (org, _) = db.org_with_project("acme").await;
    let alice = s
        .create_user("a@example.com", "A", "pw-123456")
        .await
        .unwrap();
    s.set_role(&org.id, &alice.id, Role::Member).await.unwrap();
    let c = s
        .create_conversation(&org.id, &alice.id, &conversation("First"))
        .await
        .unwrap();
    assert_eq!(c.settings, "{}");
    let m1 = s
        .append_message(&org.id, &alice.id, &c.id, &message("user", "hello"))
        .await
        .unwrap();
    let m2 = s
        .append_message(
            &org.id,
            &alice.id,
            &c.id,
            &NewMessage {
                request_id: Some("req_1".into()),
                prompt_tokens: Some(5),
                completion_tokens: Some(7),
                ..message("assistant", "hi there")
            },
        )
        .await
        .unwrap();
    s.append_message(&org.id, &alice.id, &c.id, &message("user", "again"))
        .await
        .unwrap();
    let all = s.list_messages(&org.id, &alice.id, &c.id).await.unwrap();
    let texts: Vec<_> = all.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["hello", "hi there", "again"]);
    assert_eq!(all[1], m2);
    assert_eq!(all[1].completion_tokens, Some(7));
    // Truncating from the assistant message drops it and what follows.
    assert_eq!(
        s.truncate_conversation(&org.id, &alice.id, &c.id, &m2.id)
            .await
            .unwrap(),
        2
    );
    let left = s.list_messages(&org.id, &alice.id, &c.id).await.unwrap();
    assert_eq!(left, vec![m1.clone()]);
    let err = s
        .truncate_conversation(&org.id, &alice.id, &c.id, &m2.id)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // Appending after a truncation continues the order.
    s.append_message(&org.id, &alice.id, &c.id, &message("assistant", "new"))
        .await
        .unwrap();
    let texts: Vec<_> = s
        .list_messages(&org.id, &alice.id, &c.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(texts, ["hello", "new"]);
    let err = s
        .append_message(&org.id, &alice.id, &c.id, &message("tool", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
}

pub async fn conversations_list_newest_first_search_rename_and_delete(db: Db) {
    let s = &db.store;
    let (org, _) = db.org_with_project("acme").await;
    let alice = s
        .create_user("a@example.com", "A", "pw-123456")
        .await
        .unwrap();
    s.set_role(&org.id, &alice.id, Role::Member).await.unwrap();
    let (o, a) = (org.id.as_str(), alice.id.as_str());
    let old = s
        .create_conversation(o, a, &conversation("Rust tips"))
        .await
        .unwrap();
    let new = s
        .create_conversation(o, a, &conversation("Cooking"))
        .await
        .unwrap();
    s.append_message(o, a, &new.id, &message("user", "Pasta 100% al_dente"))
        .await
        .unwrap();
    // Touch `old` last, a millisecond later: it becomes the newest.
    tick().await;
    s.append_message(o, a, &old.id, &message("user", "borrow checker"))
        .await
        .unwrap();
    let ids: Vec<_> = s
        .list_conversations(o, a, None, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [old.id.clone(), new.id.clone()]);
    let find = |q: &'static str| async move {
        s.list_conversations(o, a, Some(q), 50)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.title)
            .collect::<Vec<_>>()
    };
    assert_eq!(find("rust").await, ["Rust tips"]);
    assert_eq!(find("CHECKER").await, ["Rust tips"]);
    assert_eq!(find("100%").await, ["Cooking"]);
    assert_eq!(find("l_d").await, ["Cooking"]);
    // Wildcards are literal: '%' alone matches only text containing it.
    assert_eq!(find("0%").await, ["Cooking"]);
    assert!(find("nothing like this").await.is_empty());
    assert_eq!(s.list_conversations(o, a, None, 1).await.unwrap().len(), 1);

    let renamed = s
        .update_conversation(
            o,
            a,
            &new.id,
            &ConversationUpdate {
                title: Some("Italian".into()),
                settings: Some(r#"{"temperature":0.2}"#.into()),
                ..ConversationUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.title, "Italian");
    assert_eq!(renamed.model, "smollm2");
    assert_eq!(
        s.get_conversation(o, a, &new.id).await.unwrap().settings,
        r#"{"temperature":0.2}"#
    );
    let err = s
        .update_conversation(
            o,
            a,
            &new.id,
            &ConversationUpdate {
                settings: Some("[]".into()),
                ..ConversationUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);

    s.delete_conversation(o, a, &new.id).await.unwrap();
    let err = s.get_conversation(o, a, &new.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = s.list_messages(o, a, &new.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = s.delete_conversation(o, a, &new.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub async fn conversations_are_isolated_by_org_and_user(db: Db) {
    let s = &db.store;
    let (org, _) = db.org_with_project("acme").await;
    let (other_org, _) = db.org_with_project("other").await;
    let alice = s
        .create_user("a@example.com", "A", "pw-123456")
        .await
        .unwrap();
    let bob = s
        .create_user("b@example.com", "B", "pw-123456")
        .await
        .unwrap();
    for user in [&alice, &bob] {
        s.set_role(&org.id, &user.id, Role::Member).await.unwrap();
    }
    s.set_role(&other_org.id, &alice.id, Role::Member)
        .await
        .unwrap();
    let c = s
        .create_conversation(&org.id, &alice.id, &conversation("secret"))
        .await
        .unwrap();
    s.append_message(&org.id, &alice.id, &c.id, &message("user", "secret text"))
        .await
        .unwrap();
    // Bob in the same organisation, and Alice in another one, see nothing.
    for (o, u) in [(&org.id, &bob.id), (&other_org.id, &alice.id)] {
        assert!(s
            .list_conversations(o, u, None, 50)
            .await
            .unwrap()
            .is_empty());
        assert!(s
            .list_conversations(o, u, Some("secret"), 50)
            .await
            .unwrap()
            .is_empty());
        let kinds = [
            s.get_conversation(o, u, &c.id).await.unwrap_err().kind(),
            s.list_messages(o, u, &c.id).await.unwrap_err().kind(),
            s.update_conversation(o, u, &c.id, &ConversationUpdate::default())
                .await
                .unwrap_err()
                .kind(),
            s.append_message(o, u, &c.id, &message("user", "x"))
                .await
                .unwrap_err()
                .kind(),
            s.truncate_conversation(o, u, &c.id, "msg_x")
                .await
                .unwrap_err()
                .kind(),
            s.delete_conversation(o, u, &c.id).await.unwrap_err().kind(),
        ];
        assert!(kinds.iter().all(|k| *k == ErrorKind::NotFound), "{kinds:?}");
    }
    // Nothing was changed by those attempts.
    let messages = s.list_messages(&org.id, &alice.id, &c.id).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        s.get_conversation(&org.id, &alice.id, &c.id)
            .await
            .unwrap()
            .title,
        "secret"
    );
}
