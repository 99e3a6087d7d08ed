//! Unit tests of the reserve → settle rules.

use super::*;

fn org() -> Scope {
    Scope::Org("acme".into())
}
fn project() -> Scope {
    Scope::Project("web".into())
}
fn key() -> Scope {
    Scope::Key("k1".into())
}
fn usd(s: &str) -> Money {
    Money::parse(s).unwrap()
}
const T: Timestamp = Timestamp(1_800_000_000_000);

#[test]
fn reservation_is_all_or_nothing() {
    let mut b = BudgetState::new();
    b.set_limits(
        org(),
        Limits {
            hard: HardLimit::MonthlyBudget(usd("10")),
            soft: None,
        },
    );
    b.set_limits(
        key(),
        Limits {
            hard: HardLimit::MonthlyBudget(usd("1")),
            soft: None,
        },
    );
    let err = b
        .reserve(&[org(), project(), key()], usd("2"), T)
        .unwrap_err();
    match err {
        BillingError::InsufficientQuota(q) => {
            assert_eq!(q.scope, key());
            assert_eq!(q.available, usd("1"));
        }
        other => panic!("unexpected {other}"),
    }
    // Nothing was held anywhere.
    assert_eq!(b.account(&org()).unwrap().reserved, Money::ZERO);
    assert!(b.account(&project()).is_none());
    let id = b.reserve(&[org(), project(), key()], usd("1"), T).unwrap();
    for s in [org(), project(), key()] {
        assert_eq!(b.account(&s).unwrap().reserved, usd("1"));
    }
    assert!(b.reserve(&[key()], usd("0.000001"), T).is_err());
    b.release(id).unwrap();
    assert_eq!(b.account(&key()).unwrap().reserved, Money::ZERO);
}

#[test]
fn settle_charges_actual_and_frees_the_rest() {
    let mut b = BudgetState::new();
    b.set_limits(
        org(),
        Limits {
            hard: HardLimit::MonthlyBudget(usd("1")),
            soft: None,
        },
    );
    let id = b.reserve(&[org()], usd("0.6"), T).unwrap();
    assert!(b.reserve(&[org()], usd("0.5"), T).is_err());
    let r = b.settle(id, usd("0.1")).unwrap();
    assert_eq!(r.settlement.charged, usd("0.1"));
    assert_eq!(r.settlement.overage, Money::ZERO);
    assert!(!r.replayed);
    let a = b.account(&org()).unwrap();
    assert_eq!(a.reserved, Money::ZERO);
    assert_eq!(a.spent_in(Month::containing(T)), usd("0.1"));
    assert_eq!(a.available(Month::containing(T)).unwrap(), Some(usd("0.9")));
    // A new month starts with the whole budget.
    let next = Month::containing(T).next().start();
    assert_eq!(
        a.available(Month::containing(next)).unwrap(),
        Some(usd("1"))
    );
}

#[test]
fn settle_and_release_are_idempotent() {
    let mut b = BudgetState::new();
    b.set_limits(
        org(),
        Limits {
            hard: HardLimit::Prepaid,
            soft: None,
        },
    );
    b.top_up(org(), usd("5")).unwrap();
    let id = b.reserve(&[org()], usd("1"), T).unwrap();
    let first = b.settle(id, usd("0.25")).unwrap();
    let again = b.settle(id, usd("0.99")).unwrap();
    let release = b.release(id).unwrap();
    assert!(again.replayed && release.replayed);
    assert_eq!(again.settlement, first.settlement);
    assert_eq!(release.settlement, first.settlement);
    assert_eq!(b.account(&org()).unwrap().balance, usd("4.75"));

    let id = b.reserve(&[org()], usd("1"), T).unwrap();
    let first = b.release(id).unwrap();
    assert_eq!(first.settlement.closure, Closure::Released);
    assert_eq!(b.settle(id, usd("1")).unwrap().settlement, first.settlement);
    assert_eq!(b.account(&org()).unwrap().balance, usd("4.75"));
    assert_eq!(b.account(&org()).unwrap().reserved, Money::ZERO);

    assert!(matches!(
        b.settle(ReservationId(999), Money::ZERO),
        Err(BillingError::UnknownReservation { id: 999 })
    ));
}

#[test]
fn overage_is_charged_and_reported() {
    let mut b = BudgetState::new();
    b.set_limits(
        org(),
        Limits {
            hard: HardLimit::Prepaid,
            soft: None,
        },
    );
    b.top_up(org(), usd("1")).unwrap();
    let id = b.reserve(&[org(), key()], usd("1"), T).unwrap();
    let r = b.settle(id, usd("1.5")).unwrap();
    assert_eq!(r.settlement.overage, usd("0.5"));
    assert!(r
        .events
        .iter()
        .any(|e| matches!(e, BudgetEvent::Overage { charged, .. } if *charged == usd("1.5"))));
    let a = b.account(&org()).unwrap();
    assert_eq!(a.balance, usd("-0.5"));
    // In debt: nothing more is admitted, not even a free request.
    assert!(b.reserve(&[org()], Money::ZERO, T).is_err());
    // The key (unlimited) still counts its spend.
    assert_eq!(
        b.account(&key()).unwrap().spent_in(Month::containing(T)),
        usd("1.5")
    );
}

#[test]
fn soft_limits_fire_once_when_crossed() {
    let mut b = BudgetState::new();
    b.set_limits(
        project(),
        Limits {
            hard: HardLimit::MonthlyBudget(usd("10")),
            soft: Some(usd("1")),
        },
    );
    b.set_limits(
        org(),
        Limits {
            hard: HardLimit::Prepaid,
            soft: Some(usd("2")),
        },
    );
    b.top_up(org(), usd("3")).unwrap();
    let mut fired = Vec::new();
    for _ in 0..4 {
        let id = b.reserve(&[org(), project()], usd("0.5"), T).unwrap();
        let r = b.settle(id, usd("0.5")).unwrap();
        fired.push(r.events);
    }
    // Spend reaches $1 on the 2nd settlement; balance falls to $2 on the 2nd too.
    assert!(fired[0].is_empty());
    assert_eq!(fired[1].len(), 2);
    assert!(fired[2].is_empty() && fired[3].is_empty());
    assert!(fired[1].contains(&BudgetEvent::SoftLimitCrossed {
        scope: project(),
        threshold: usd("1"),
        value: usd("1"),
        month: Month::containing(T),
    }));
}

#[test]
fn negative_amounts_and_duplicate_scopes() {
    let mut b = BudgetState::new();
    assert!(b.reserve(&[org()], usd("-1"), T).is_err());
    assert!(b.top_up(org(), usd("-1")).is_err());
    b.set_limits(
        org(),
        Limits {
            hard: HardLimit::MonthlyBudget(usd("1")),
            soft: None,
        },
    );
    // Naming a scope twice holds it once.
    let id = b.reserve(&[org(), org()], usd("1"), T).unwrap();
    assert_eq!(b.account(&org()).unwrap().reserved, usd("1"));
    assert!(b.settle(id, usd("-1")).is_err());
    assert_eq!(b.open_reservations().count(), 1);
    b.settle(id, usd("1")).unwrap();
    assert_eq!(b.open_reservations().count(), 0);
    b.forget_closed_before(Month::containing(T).next());
    assert!(b.release(id).is_err());
}

#[test]
fn book_is_a_ledger() {
    let book = BudgetBook::new();
    book.set_limits(
        org(),
        Limits {
            hard: HardLimit::Prepaid,
            soft: None,
        },
    );
    book.top_up(org(), usd("1")).unwrap();
    let ledger: &dyn Ledger = &book;
    let id = ledger.reserve(&[org()], usd("1"), T).unwrap();
    assert!(ledger.reserve(&[org()], usd("0.01"), T).is_err());
    ledger.settle(id, usd("0.4")).unwrap();
    assert_eq!(book.account(&org()).unwrap().balance, usd("0.6"));
    assert_eq!(book.snapshot().open_reservations().count(), 0);
}

#[test]
fn state_round_trips_through_its_parts() {
    let mut b = BudgetState::new();
    b.set_limits(
        org(),
        Limits {
            hard: HardLimit::MonthlyBudget(usd("1")),
            soft: None,
        },
    );
    let open = b.reserve(&[org()], usd("0.5"), T).unwrap();
    let done = b.reserve(&[org()], usd("0.1"), T).unwrap();
    let first = b.settle(done, usd("0.1")).unwrap();
    let mut restored = BudgetState::from_parts(
        b.accounts().map(|(s, a)| (s.clone(), a.clone())),
        b.open_reservations().cloned(),
        b.settlement(done).copied(),
        open.0 + 2,
    );
    assert_eq!(restored.account(&org()), b.account(&org()));
    assert_eq!(
        restored.settle(done, usd("0.9")).unwrap().settlement,
        first.settlement
    );
    assert!(restored.reserve(&[org()], usd("0.41"), T).is_err());
    let next = restored.reserve(&[org()], usd("0.4"), T).unwrap();
    assert!(next.0 > done.0);
    restored.settle(open, usd("0.5")).unwrap();
    assert_eq!(restored.account(&org()).unwrap().reserved, usd("0.4"));
}
