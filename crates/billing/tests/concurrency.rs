//! Many threads reserving against one budget: exactly the admitted number
//! succeed and spend never exceeds the budget.

use std::sync::{Arc, Barrier};
use std::thread;

use billing::{
    cost, worst_case, BillingError, BudgetBook, HardLimit, Ledger, Limits, ModelPrices, Money,
    Scope, Timestamp, Usage,
};

const T: Timestamp = Timestamp(1_800_000_000_000);

fn run(limit: HardLimit, top_up: Option<Money>, admits: usize) {
    const THREADS: usize = 200;
    let prices = ModelPrices::reference();
    let (prompt, max_tokens) = (500, 1000);
    let reserve = worst_case(prompt, max_tokens, &prices).unwrap();
    let book = Arc::new(BudgetBook::new());
    let org = Scope::Org("acme".into());
    let key = Scope::Key("k".into());
    book.set_limits(
        org.clone(),
        Limits {
            hard: limit,
            soft: None,
        },
    );
    if let Some(amount) = top_up {
        book.top_up(org.clone(), amount).unwrap();
    }
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (book, barrier, org, key) =
                (book.clone(), barrier.clone(), org.clone(), key.clone());
            thread::spawn(move || {
                barrier.wait();
                match book.reserve(&[org, key], reserve, T) {
                    Ok(id) => {
                        // Actual use is at most the reservation; vary it.
                        let used = Usage::new(prompt, (i as u64 * 7) % (max_tokens + 1));
                        let actual = cost(used, &prices).unwrap();
                        let first = book.settle(id, actual).unwrap();
                        let again = book.settle(id, actual).unwrap();
                        assert!(again.replayed);
                        assert_eq!(first.settlement, again.settlement);
                        Some(actual)
                    }
                    Err(BillingError::InsufficientQuota(_)) => None,
                    Err(e) => panic!("unexpected error {e}"),
                }
            })
        })
        .collect();
    let charged: Vec<Money> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    // Settled requests free the unused part of their hold, so at least `admits`
    // succeed (often more); spend must stay within the budget regardless.
    assert!(charged.len() >= admits, "{} < {admits}", charged.len());
    let spent = Money::checked_sum(charged.iter().copied()).unwrap();
    let account = book.account(&org).unwrap();
    assert_eq!(account.reserved, Money::ZERO);
    let month = billing::Month::containing(T);
    assert_eq!(account.spent_in(month), spent);
    let budget = match limit {
        HardLimit::MonthlyBudget(b) => b,
        _ => top_up.unwrap(),
    };
    assert!(spent <= budget, "spent {spent} > budget {budget}");
}

/// Holding every reservation open until all threads have tried makes the
/// count exact: exactly `N` reservations fit.
fn run_exact(limit: HardLimit, top_up: Option<Money>, n: usize) {
    const THREADS: usize = 200;
    let prices = ModelPrices::reference();
    let reserve = worst_case(500, 1000, &prices).unwrap();
    let book = Arc::new(BudgetBook::new());
    let org = Scope::Org("acme".into());
    book.set_limits(
        org.clone(),
        Limits {
            hard: limit,
            soft: None,
        },
    );
    if let Some(amount) = top_up {
        book.top_up(org.clone(), amount).unwrap();
    }
    let start = Arc::new(Barrier::new(THREADS));
    let tried = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (book, start, tried, org) =
                (book.clone(), start.clone(), tried.clone(), org.clone());
            thread::spawn(move || {
                start.wait();
                let got = book.reserve(&[org], reserve, T);
                tried.wait();
                got.ok().map(|id| {
                    // Settle with the whole worst case: the most that can be spent.
                    book.settle(id, reserve).unwrap();
                    book.release(id).unwrap();
                })
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .count();
    assert_eq!(ok, n);
    let account = book.account(&org).unwrap();
    let spent = account.spent_in(billing::Month::containing(T));
    assert_eq!(spent, reserve.checked_mul(n as u64).unwrap());
    let budget = match limit {
        HardLimit::MonthlyBudget(b) => b,
        _ => top_up.unwrap(),
    };
    assert!(spent <= budget);
    assert_eq!(account.reserved, Money::ZERO);
}

#[test]
fn exactly_n_of_200_fit_a_monthly_budget() {
    // Worst case is 500 × $0.00001 + 1000 × $0.00003 = $0.035; $1.75 admits 50.
    run_exact(
        HardLimit::MonthlyBudget(Money::parse("1.75").unwrap()),
        None,
        50,
    );
    // One picodollar short admits one fewer.
    let short = Money::parse("1.75")
        .unwrap()
        .checked_sub(Money::from_units(1))
        .unwrap();
    run_exact(HardLimit::MonthlyBudget(short), None, 49);
}

#[test]
fn exactly_n_of_200_fit_a_prepaid_balance() {
    run_exact(HardLimit::Prepaid, Some(Money::parse("0.35").unwrap()), 10);
}

#[test]
fn concurrent_settles_never_overspend() {
    run(
        HardLimit::MonthlyBudget(Money::parse("1.75").unwrap()),
        None,
        50,
    );
    run(HardLimit::Prepaid, Some(Money::parse("0.35").unwrap()), 10);
}
