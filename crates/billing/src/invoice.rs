//! Monthly invoices per organisation, built from usage records.
//!
//! [`Invoice::build`] keeps the records of one organisation whose request
//! started in the month, groups them into one [`LineItem`] per (project,
//! model) pair, and totals them exactly. The costs are taken from the records
//! as the ledger stored them (priced at each request's start), never
//! recomputed, so the invoice always agrees with the ledger. It renders as
//! JSON (amounts as exact decimal strings) and as CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::cost::Usage;
use crate::error::BillingError;
use crate::money::Money;
use crate::time::{Month, Timestamp};

/// One billed request, as the usage ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The organisation billed.
    pub org: String,
    /// The project inside it.
    pub project: String,
    /// The model used.
    pub model: String,
    /// Tokens used.
    pub usage: Usage,
    /// What it cost.
    pub cost: Money,
    /// When the request started.
    pub started_at: Timestamp,
}

/// The total of one (project, model) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// The project.
    pub project: String,
    /// The model.
    pub model: String,
    /// Number of requests.
    pub requests: u64,
    /// Sum of their token usage.
    pub usage: Usage,
    /// Sum of their costs.
    pub amount: Money,
}

/// A monthly invoice of one organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// The organisation.
    pub org: String,
    /// The month billed.
    pub month: Month,
    /// First instant of the period.
    pub period_start: Timestamp,
    /// First instant after the period.
    pub period_end: Timestamp,
    /// Always `"usd"`.
    pub currency: String,
    /// Line items sorted by project, then model.
    pub lines: Vec<LineItem>,
    /// Σ of the line items' amounts.
    pub total: Money,
}

/// The CSV header row.
pub const CSV_HEADER: &str =
    "project,model,requests,prompt_tokens,cached_tokens,completion_tokens,amount_usd";

impl Invoice {
    /// Builds `org`'s invoice for `month` from `records` (others are ignored).
    pub fn build<'a, I>(org: &str, month: Month, records: I) -> Result<Invoice, BillingError>
    where
        I: IntoIterator<Item = &'a UsageRecord>,
    {
        let mut groups: BTreeMap<(&str, &str), LineItem> = BTreeMap::new();
        for r in records {
            if r.org != org || !month.contains(r.started_at) {
                continue;
            }
            let line = groups
                .entry((r.project.as_str(), r.model.as_str()))
                .or_insert_with(|| LineItem {
                    project: r.project.clone(),
                    model: r.model.clone(),
                    requests: 0,
                    usage: Usage::default(),
                    amount: Money::ZERO,
                });
            line.requests = line.requests.checked_add(1).ok_or(BillingError::Overflow {
                op: "invoice requests",
            })?;
            line.usage = line.usage.checked_add(r.usage)?;
            line.amount = line.amount.checked_add(r.cost)?;
        }
        let lines: Vec<LineItem> = groups.into_values().collect();
        let total = Money::checked_sum(lines.iter().map(|l| l.amount))?;
        Ok(Invoice {
            org: org.to_string(),
            month,
            period_start: month.start(),
            period_end: month.end(),
            currency: "usd".into(),
            lines,
            total,
        })
    }

    /// Totals per model across projects, by model name.
    pub fn totals_by_model(&self) -> Result<BTreeMap<String, Money>, BillingError> {
        self.totals(|l| &l.model)
    }

    /// Totals per project across models, by project name.
    pub fn totals_by_project(&self) -> Result<BTreeMap<String, Money>, BillingError> {
        self.totals(|l| &l.project)
    }

    fn totals(
        &self,
        key: impl Fn(&LineItem) -> &String,
    ) -> Result<BTreeMap<String, Money>, BillingError> {
        let mut out: BTreeMap<String, Money> = BTreeMap::new();
        for line in &self.lines {
            let slot = out.entry(key(line).clone()).or_insert(Money::ZERO);
            *slot = slot.checked_add(line.amount)?;
        }
        Ok(out)
    }

    /// Pretty JSON; amounts are exact decimal strings.
    pub fn to_json(&self) -> Result<String, BillingError> {
        serde_json::to_string_pretty(self).map_err(|e| BillingError::Render {
            format: "json",
            detail: e.to_string(),
        })
    }

    /// CSV: [`CSV_HEADER`], then one row per line item (RFC 4180 quoting).
    pub fn to_csv(&self) -> String {
        let mut out = String::with_capacity(64 * (self.lines.len() + 1));
        out.push_str(CSV_HEADER);
        out.push_str("\r\n");
        for l in &self.lines {
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "{},{},{},{},{},{},{}\r\n",
                csv_field(&l.project),
                csv_field(&l.model),
                l.requests,
                l.usage.prompt_tokens,
                l.usage.cached_tokens,
                l.usage.completion_tokens,
                l.amount.to_decimal_string(),
            );
        }
        out
    }
}

/// Quotes a field if it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
#[path = "invoice_tests.rs"]
mod tests;
