//! Unit tests of invoice building and rendering.

use super::*;
use crate::cost::cost;
use crate::price::ModelPrices;
use proptest::prelude::*;

const T: Timestamp = Timestamp(1_800_000_000_000);

fn record(org: &str, project: &str, model: &str, usage: Usage, at: Timestamp) -> UsageRecord {
    UsageRecord {
        org: org.into(),
        project: project.into(),
        model: model.into(),
        usage,
        cost: cost(usage, &ModelPrices::reference()).unwrap(),
        started_at: at,
    }
}

#[test]
fn groups_per_project_and_model_within_org_and_month() {
    let month = Month::containing(T);
    let records = vec![
        record("acme", "web", "m1", Usage::new(1000, 1000), T),
        record("acme", "web", "m1", Usage::new(10, 1), T),
        record("acme", "web", "m2", Usage::new(1000, 0), T),
        record("acme", "api", "m1", Usage::new(0, 1000), T),
        record("other", "web", "m1", Usage::new(1000, 1000), T),
        record("acme", "web", "m1", Usage::new(1000, 1000), month.end()),
        record(
            "acme",
            "web",
            "m1",
            Usage::new(1000, 1000),
            Timestamp(month.start().0 - 1),
        ),
    ];
    let inv = Invoice::build("acme", month, &records).unwrap();
    let keys: Vec<(&str, &str, u64)> = inv
        .lines
        .iter()
        .map(|l| (l.project.as_str(), l.model.as_str(), l.requests))
        .collect();
    assert_eq!(keys, [("api", "m1", 1), ("web", "m1", 2), ("web", "m2", 1)]);
    assert_eq!(inv.lines[1].amount.to_string(), "$0.040130");
    assert_eq!(
        inv.total,
        Money::parse("0.03")
            .unwrap()
            .checked_add(Money::parse("0.050130").unwrap())
            .unwrap()
    );
    assert_eq!(
        inv.totals_by_project().unwrap()["web"],
        Money::parse("0.050130").unwrap()
    );
    assert_eq!(
        inv.totals_by_model().unwrap()["m2"],
        Money::parse("0.01").unwrap()
    );

    let csv = inv.to_csv();
    let rows: Vec<&str> = csv.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows[0], CSV_HEADER);
    assert_eq!(rows.len(), 1 + inv.lines.len());
    assert_eq!(rows[2], "web,m1,2,1010,0,1001,0.040130");

    let json = inv.to_json().unwrap();
    let back: Invoice = serde_json::from_str(&json).unwrap();
    assert_eq!(back, inv);
    assert!(json.contains("\"total\": \"0.080130\""), "{json}");
    assert!(json.contains("\"month\": \"2027-01\""), "{json}");
}

#[test]
fn csv_quotes_awkward_names() {
    let records = vec![record("o", "a,\"b\"", "m\n1", Usage::new(1, 1), T)];
    let inv = Invoice::build("o", Month::containing(T), &records).unwrap();
    assert!(inv.to_csv().contains("\"a,\"\"b\"\"\",\"m\n1\",1,"));
}

#[test]
fn empty_month_has_zero_total_and_header_only() {
    let inv = Invoice::build("o", Month::containing(T), &[]).unwrap();
    assert_eq!(inv.total, Money::ZERO);
    assert_eq!(inv.to_csv(), format!("{CSV_HEADER}\r\n"));
}

fn records() -> impl Strategy<Value = Vec<UsageRecord>> {
    let one = (0usize..3, 0usize..3, 0u64..5000, 0u64..5000, 0u64..5000).prop_map(
        |(p, m, pt, ct, ot)| {
            let usage = Usage {
                prompt_tokens: pt.max(ct),
                cached_tokens: ct.min(pt),
                completion_tokens: ot,
            };
            record(
                "acme",
                ["p0", "p1", "p2"][p],
                ["m0", "m1", "m2"][m],
                usage,
                T,
            )
        },
    );
    proptest::collection::vec(one, 0..60)
}

proptest! {
    #[test]
    fn totals_equal_line_items_equal_ledger(recs in records()) {
        let inv = Invoice::build("acme", Month::containing(T), &recs).unwrap();
        let ledger = Money::checked_sum(recs.iter().map(|r| r.cost)).unwrap();
        let lines = Money::checked_sum(inv.lines.iter().map(|l| l.amount)).unwrap();
        prop_assert_eq!(inv.total, lines);
        prop_assert_eq!(inv.total, ledger);
        let requests: u64 = inv.lines.iter().map(|l| l.requests).sum();
        prop_assert_eq!(requests, recs.len() as u64);
        let by_model = Money::checked_sum(inv.totals_by_model().unwrap().into_values()).unwrap();
        prop_assert_eq!(by_model, ledger);
        prop_assert_eq!(inv.to_csv().lines().count(), 1 + inv.lines.len());
    }
}
