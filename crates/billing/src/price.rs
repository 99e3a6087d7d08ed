//! Per-model prices and the price table with its history of changes.
//!
//! A [`ModelPrices`] holds exact per-token prices for input, cached input and
//! output tokens. A [`PriceTable`] keeps, per model, every price with the
//! instant it became effective; [`PriceTable::price_at`] answers with the
//! price in force when a request *started*, so a change applies only to
//! requests that start at or after its `effective_from`, and the history stays
//! recorded. Models without their own entry fall back to the table's default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::BillingError;
use crate::money::Money;
use crate::time::Timestamp;

/// Reference input price: $0.01 per 1K tokens.
pub const REFERENCE_INPUT_PER_1K: &str = "0.01";
/// Reference output price: $0.03 per 1K tokens.
pub const REFERENCE_OUTPUT_PER_1K: &str = "0.03";

/// Exact per-token prices of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrices {
    /// Per uncached prompt token.
    pub input: Money,
    /// Per cached prompt token.
    pub cached_input: Money,
    /// Per completion token.
    pub output: Money,
}

impl ModelPrices {
    /// Prices from per-token amounts; cached input costs the same as input.
    pub fn new(input: Money, output: Money) -> ModelPrices {
        ModelPrices {
            input,
            cached_input: input,
            output,
        }
    }

    /// Prices from decimal dollar strings per 1K tokens (`"0.01"`, `"0.03"`).
    pub fn per_1k(input: &str, output: &str) -> Result<ModelPrices, BillingError> {
        Ok(ModelPrices::new(
            Money::per_token(input, 1000)?,
            Money::per_token(output, 1000)?,
        ))
    }

    /// Prices from decimal dollar strings per 1M tokens (`"2.50"`, `"10"`).
    pub fn per_1m(input: &str, output: &str) -> Result<ModelPrices, BillingError> {
        Ok(ModelPrices::new(
            Money::per_token(input, 1_000_000)?,
            Money::per_token(output, 1_000_000)?,
        ))
    }

    /// The same prices with a separate cached-input price per token.
    pub fn with_cached_input(self, cached_input: Money) -> ModelPrices {
        ModelPrices {
            cached_input,
            ..self
        }
    }

    /// The reference prices: $0.01 / 1K input (and cached input), $0.03 / 1K output.
    pub fn reference() -> ModelPrices {
        // 0.01 / 1000 USD = 10^7 pUSD and 0.03 / 1000 USD = 3 × 10^7 pUSD, exactly.
        ModelPrices::new(Money::from_units(10_000_000), Money::from_units(30_000_000))
    }
}

/// One recorded price: what it is and since when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceEntry {
    /// Requests starting at or after this instant use `prices`.
    pub effective_from: Timestamp,
    /// The prices.
    pub prices: ModelPrices,
}

/// Prices of every model over time, plus a default for unlisted models.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable {
    /// Per model, entries sorted by `effective_from` (at most one per instant).
    models: BTreeMap<String, Vec<PriceEntry>>,
    /// Entries for models without their own, sorted likewise.
    default: Vec<PriceEntry>,
}

impl PriceTable {
    /// An empty table: every lookup fails until prices are set.
    pub fn new() -> PriceTable {
        PriceTable::default()
    }

    /// The default table: every model at the reference prices since the epoch.
    pub fn reference() -> PriceTable {
        let mut table = PriceTable::new();
        table.set_default(Timestamp::EPOCH, ModelPrices::reference());
        table
    }

    /// Records `prices` for `model` from `effective_from` on (replacing an
    /// entry at exactly that instant).
    pub fn set(&mut self, model: &str, effective_from: Timestamp, prices: ModelPrices) {
        let entries = self.models.entry(model.to_string()).or_default();
        insert_sorted(
            entries,
            PriceEntry {
                effective_from,
                prices,
            },
        );
    }

    /// Records default prices for models without their own entry.
    pub fn set_default(&mut self, effective_from: Timestamp, prices: ModelPrices) {
        insert_sorted(
            &mut self.default,
            PriceEntry {
                effective_from,
                prices,
            },
        );
    }

    /// The prices for a request for `model` that started at `started_at`:
    /// the model's latest entry effective at that instant, else the default's.
    pub fn price_at(
        &self,
        model: &str,
        started_at: Timestamp,
    ) -> Result<ModelPrices, BillingError> {
        self.models
            .get(model)
            .and_then(|entries| effective(entries, started_at))
            .or_else(|| effective(&self.default, started_at))
            .ok_or_else(|| BillingError::UnknownModel {
                model: model.to_string(),
            })
    }

    /// The recorded history of `model`'s own prices, oldest first.
    pub fn history(&self, model: &str) -> &[PriceEntry] {
        self.models.get(model).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The recorded history of the default prices, oldest first.
    pub fn default_history(&self) -> &[PriceEntry] {
        &self.default
    }

    /// Models with their own prices, in name order.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

fn insert_sorted(entries: &mut Vec<PriceEntry>, entry: PriceEntry) {
    match entries.binary_search_by_key(&entry.effective_from, |e| e.effective_from) {
        Ok(i) => entries[i] = entry,
        Err(i) => entries.insert(i, entry),
    }
}

fn effective(entries: &[PriceEntry], at: Timestamp) -> Option<ModelPrices> {
    let after = entries.partition_point(|e| e.effective_from <= at);
    after.checked_sub(1).map(|i| entries[i].prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_prices_match_their_strings() {
        let parsed = ModelPrices::per_1k(REFERENCE_INPUT_PER_1K, REFERENCE_OUTPUT_PER_1K).unwrap();
        assert_eq!(parsed, ModelPrices::reference());
        assert_eq!(parsed.cached_input, parsed.input);
        let table = PriceTable::reference();
        assert_eq!(table.price_at("anything", Timestamp(5)).unwrap(), parsed);
    }

    #[test]
    fn price_change_applies_only_from_its_timestamp() {
        let mut table = PriceTable::reference();
        let change = Timestamp::from_unix_seconds(1_800_000_000);
        let new = ModelPrices::per_1m("2.50", "10")
            .unwrap()
            .with_cached_input(Money::per_token("1.25", 1_000_000).unwrap());
        table.set("gpt-x", change, new);
        assert_eq!(
            table.price_at("gpt-x", Timestamp(change.0 - 1)).unwrap(),
            ModelPrices::reference()
        );
        assert_eq!(table.price_at("gpt-x", change).unwrap(), new);
        assert_eq!(
            table.price_at("gpt-x", Timestamp(change.0 + 1)).unwrap(),
            new
        );
        // Other models are untouched.
        assert_eq!(
            table.price_at("other", Timestamp(change.0 + 1)).unwrap(),
            ModelPrices::reference()
        );
        assert_eq!(table.history("gpt-x").len(), 1);
    }

    #[test]
    fn history_is_kept_in_order_and_same_instant_replaces() {
        let mut table = PriceTable::new();
        let a = ModelPrices::per_1k("0.01", "0.02").unwrap();
        let b = ModelPrices::per_1k("0.02", "0.04").unwrap();
        let c = ModelPrices::per_1k("0.03", "0.06").unwrap();
        table.set("m", Timestamp(200), c);
        table.set("m", Timestamp(100), a);
        table.set("m", Timestamp(150), a);
        table.set("m", Timestamp(150), b);
        let times: Vec<i64> = table
            .history("m")
            .iter()
            .map(|e| e.effective_from.0)
            .collect();
        assert_eq!(times, [100, 150, 200]);
        assert_eq!(table.price_at("m", Timestamp(149)).unwrap(), a);
        assert_eq!(table.price_at("m", Timestamp(199)).unwrap(), b);
        assert_eq!(table.price_at("m", Timestamp(10_000)).unwrap(), c);
        let err = table.price_at("m", Timestamp(99)).unwrap_err();
        assert!(matches!(err, BillingError::UnknownModel { .. }));
        assert!(table.price_at("unknown", Timestamp(150)).is_err());
    }
}
