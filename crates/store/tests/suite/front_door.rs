//! The front door: sign-ups waiting for approval, and the sign-in
//! throttling rows every instance shares.

use store::{ErrorKind, Role, Throttle};

use crate::support::Db;

pub async fn pending_signups_are_approved_or_rejected_once(db: Db) {
    let s = &db.store;
    let org = s.create_org("acme").await.unwrap();
    let other = s.create_org("globex").await.unwrap();
    let bob = s
        .create_pending_user(&org.id, "Bob@Example.com", "Bob", "difference engine")
        .await
        .unwrap();
    assert_eq!(bob.email, "bob@example.com");
    let carol = s
        .create_pending_user(&org.id, "carol@example.com", "Carol", "difference engine")
        .await
        .unwrap();
    // The email is taken and the password checks, but there is no membership.
    let dup = s
        .create_pending_user(&org.id, "BOB@example.com", "B", "x")
        .await
        .unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::Conflict);
    assert_eq!(
        s.verify_password("bob@example.com", "difference engine")
            .await
            .unwrap(),
        bob
    );
    assert_eq!(
        s.get_role(&org.id, &bob.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(s.list_members(&org.id).await.unwrap().is_empty());
    assert!(s.signup_pending(&org.id, &bob.id).await.unwrap());
    assert!(!s.signup_pending(&other.id, &bob.id).await.unwrap());
    let pending = s.list_signup_requests(&org.id).await.unwrap();
    let people: Vec<&str> = pending.iter().map(|p| p.user.email.as_str()).collect();
    assert_eq!(people, ["bob@example.com", "carol@example.com"]);
    assert!(pending[0].requested_at > 0);
    assert!(s.list_signup_requests(&other.id).await.unwrap().is_empty());
    // No request for an unknown organisation, and both or neither.
    let missing = s
        .create_pending_user("org_missing", "dave@example.com", "Dave", "pw-123456")
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    s.create_user("dave@example.com", "Dave", "pw-123456")
        .await
        .expect("the failed request left no account behind");

    // Another organisation cannot approve; approving twice is NotFound.
    let err = s
        .approve_signup(&other.id, &bob.id, Role::Member)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        s.approve_signup(&org.id, &bob.id, Role::Member)
            .await
            .unwrap(),
        bob
    );
    assert_eq!(s.get_role(&org.id, &bob.id).await.unwrap(), Role::Member);
    assert!(!s.signup_pending(&org.id, &bob.id).await.unwrap());
    for again in [
        s.approve_signup(&org.id, &bob.id, Role::Member).await,
        s.reject_signup(&org.id, &bob.id).await,
    ] {
        assert_eq!(again.unwrap_err().kind(), ErrorKind::NotFound);
    }

    // Rejecting deletes the request and the account: the email is free again.
    assert_eq!(s.reject_signup(&org.id, &carol.id).await.unwrap(), carol);
    assert!(s.list_signup_requests(&org.id).await.unwrap().is_empty());
    let gone = s
        .verify_password("carol@example.com", "difference engine")
        .await
        .unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::Unauthorized);
    s.create_pending_user(&org.id, "carol@example.com", "Carol", "new password")
        .await
        .unwrap();
    // A person who belongs elsewhere keeps their account when rejected here.
    s.create_pending_user(&other.id, "erin@example.com", "Erin", "pw-123456")
        .await
        .unwrap();
    let erin = s
        .verify_password("erin@example.com", "pw-123456")
        .await
        .unwrap();
    s.set_role(&org.id, &erin.id, Role::Member).await.unwrap();
    s.reject_signup(&other.id, &erin.id).await.unwrap();
    assert_eq!(
        s.verify_password("erin@example.com", "pw-123456")
            .await
            .unwrap(),
        erin
    );

    // Concurrent approvals and rejections of one request: exactly one wins.
    let frank = s
        .create_pending_user(&org.id, "frank@example.com", "Frank", "pw-123456")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, org, frank) = (s.clone(), org.id.clone(), frank.id.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                s.approve_signup(&org, &frank, Role::Member).await.is_ok()
            } else {
                s.reject_signup(&org, &frank).await.is_ok()
            }
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
}

pub async fn throttle_rows_update_atomically_and_expire(db: Db) {
    let s = &db.store;
    assert_eq!(
        s.throttle("account:a@x").await.unwrap(),
        Throttle::default()
    );
    // `None` changes nothing and leaves no row behind.
    let (before, written) = s.update_throttle("account:a@x", |_| None).await.unwrap();
    assert_eq!((before, written), (Throttle::default(), None));
    assert_eq!(s.forget_throttles(i64::MAX).await.unwrap(), 0);

    let row = Throttle {
        failures: 5,
        lockouts: 1,
        last_failure_at: 1_000,
        locked_until: 61_000,
        expires_at: 961_000,
    };
    let (before, written) = s
        .update_throttle("account:a@x", |current| {
            assert_eq!(*current, Throttle::default());
            Some(row)
        })
        .await
        .unwrap();
    assert_eq!((before, written), (Throttle::default(), Some(row)));
    assert_eq!(s.throttle("account:a@x").await.unwrap(), row);
    assert_eq!(
        s.throttle("account:b@x").await.unwrap(),
        Throttle::default()
    );

    // Concurrent read-modify-writes of one key lose nothing.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.update_throttle("address:192.0.2.1", |current| {
                Some(Throttle {
                    failures: current.failures + 1,
                    expires_at: 5_000,
                    ..*current
                })
            })
            .await
            .unwrap()
        }));
    }
    let mut seen: Vec<i64> = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().0.failures);
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..16).collect::<Vec<i64>>(),
        "each saw the one before"
    );
    assert_eq!(s.throttle("address:192.0.2.1").await.unwrap().failures, 16);

    // The default state deletes the row; clearing answers whether it had one.
    s.update_throttle("address:192.0.2.1", |_| Some(Throttle::default()))
        .await
        .unwrap();
    assert!(!s.clear_throttle("address:192.0.2.1").await.unwrap());
    assert!(s.clear_throttle("account:a@x").await.unwrap());
    assert_eq!(
        s.throttle("account:a@x").await.unwrap(),
        Throttle::default()
    );

    // Expired rows are forgotten; live ones stay.
    for (key, expires_at) in [("k1", 100), ("k2", 200), ("k3", 300)] {
        s.update_throttle(key, |_| {
            Some(Throttle {
                failures: 1,
                expires_at,
                ..Throttle::default()
            })
        })
        .await
        .unwrap();
    }
    assert_eq!(s.forget_throttles(200).await.unwrap(), 2);
    assert_eq!(s.throttle("k3").await.unwrap().failures, 1);
    assert_eq!(s.throttle("k1").await.unwrap(), Throttle::default());
}

pub async fn pending_signups_move_with_the_local_fold(db: Db) {
    let s = &db.store;
    let default = s.create_org("default").await.unwrap();
    let local = s.create_org("local").await.unwrap();
    let waiting = s
        .create_pending_user(&local.id, "wait@example.com", "W", "pw-123456")
        .await
        .unwrap();
    // Pending in `local` but already a member of the default organisation.
    let member = s
        .create_pending_user(&local.id, "member@example.com", "M", "pw-123456")
        .await
        .unwrap();
    s.set_role(&default.id, &member.id, Role::Member)
        .await
        .unwrap();

    let fold = s.fold_local_org().await.unwrap();
    assert_eq!(fold.merged, vec![local.id.clone()]);
    let pending: Vec<String> = s
        .list_signup_requests(&default.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.user.email)
        .collect();
    assert_eq!(pending, ["wait@example.com"]);
    assert!(s.signup_pending(&default.id, &waiting.id).await.unwrap());
    assert_eq!(
        s.get_role(&default.id, &member.id).await.unwrap(),
        Role::Member
    );
}
