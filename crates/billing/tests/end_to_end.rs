//! The billing arithmetic of a month without I/O: price at start → worst
//! case → actual cost → ledger records → invoice; every sum agrees exactly.
//! (Holding the worst case against budgets and settling the cost is the
//! store's job, tested in the store suite.)

use billing::{
    cost, worst_case, Invoice, ModelPrices, Money, Month, PriceTable, Timestamp, Usage, UsageRecord,
};
use proptest::prelude::*;

const MONTH_START: i64 = 1_798_761_600_000; // 2027-01-01T00:00:00Z
const CHANGE: Timestamp = Timestamp(MONTH_START + 15 * 86_400_000);

fn table() -> PriceTable {
    let mut t = PriceTable::reference();
    t.set(
        "big",
        Timestamp::EPOCH,
        ModelPrices::per_1m("2.50", "10").unwrap(),
    );
    t.set(
        "big",
        CHANGE,
        ModelPrices::per_1m("1.25", "5")
            .unwrap()
            .with_cached_input(Money::per_token("0.125", 1_000_000).unwrap()),
    );
    t
}

#[derive(Debug, Clone)]
struct Req {
    project: &'static str,
    model: &'static str,
    at: Timestamp,
    usage: Usage,
    max_tokens: u64,
    refused: bool,
}

fn req() -> impl Strategy<Value = Req> {
    (
        0usize..2,
        0usize..2,
        0i64..(28 * 86_400_000),
        (0u64..4000, 0u64..4000, 0u64..2000),
        0u64..3000,
        any::<bool>(),
        0u8..10,
    )
        .prop_map(|(p, m, offset, (pt, ct, ot), headroom, overrun, refused)| {
            let usage = Usage {
                prompt_tokens: pt.max(ct),
                cached_tokens: ct.min(pt),
                completion_tokens: ot,
            };
            // Sometimes a backend returns more tokens than asked (overage).
            let max_tokens = if overrun { ot / 2 } else { ot + headroom };
            Req {
                project: ["web", "batch"][p],
                model: ["small", "big"][m],
                at: Timestamp(MONTH_START + offset),
                usage,
                max_tokens,
                refused: refused == 0,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn ledger_and_invoice_agree(reqs in proptest::collection::vec(req(), 0..80)) {
        let prices = table();
        let mut ledger = Vec::new();
        for r in &reqs {
            let p = prices.price_at(r.model, r.at).unwrap();
            let worst = worst_case(r.usage.prompt_tokens, r.max_tokens, &p).unwrap();
            if r.refused {
                continue;
            }
            let actual = cost(r.usage, &p).unwrap();
            // The worst case covers the actual cost whenever the backend
            // generated no more than it was asked to.
            if r.usage.completion_tokens <= r.max_tokens {
                prop_assert!(actual <= worst, "{} > {}", actual, worst);
            }
            ledger.push(UsageRecord {
                org: "acme".into(),
                project: r.project.into(),
                model: r.model.into(),
                usage: r.usage,
                cost: actual,
                started_at: r.at,
            });
        }
        let month = Month::containing(Timestamp(MONTH_START));
        let invoice = Invoice::build("acme", month, &ledger).unwrap();
        let ledger_sum = Money::checked_sum(ledger.iter().map(|r| r.cost)).unwrap();
        prop_assert_eq!(invoice.total, ledger_sum);
        // Per model, Σ of costs == cost of the summed usage, split at the price change.
        for model in ["small", "big"] {
            for (lo, hi) in [(Timestamp(MONTH_START), CHANGE), (CHANGE, month.end())] {
                let rs: Vec<_> = ledger.iter().filter(|r| r.model == model && lo <= r.started_at && r.started_at < hi).collect();
                let mut usage = Usage::default();
                for r in &rs { usage = usage.checked_add(r.usage).unwrap(); }
                let summed = Money::checked_sum(rs.iter().map(|r| r.cost)).unwrap();
                prop_assert_eq!(summed, cost(usage, &prices.price_at(model, lo).unwrap()).unwrap());
            }
        }
    }
}

#[test]
fn price_change_applies_only_to_requests_starting_after_it() {
    let prices = table();
    let u = Usage {
        prompt_tokens: 1_000_000,
        cached_tokens: 1_000_000,
        completion_tokens: 1_000_000,
    };
    let before = cost(u, &prices.price_at("big", Timestamp(CHANGE.0 - 1)).unwrap()).unwrap();
    let after = cost(u, &prices.price_at("big", CHANGE).unwrap()).unwrap();
    assert_eq!(before, Money::parse("12.50").unwrap());
    assert_eq!(after, Money::parse("5.125").unwrap());
}
