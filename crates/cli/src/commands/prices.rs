//! `parlance prices set|list`: per-model prices, installation-wide, in US
//! dollars per 1K (or 1M) tokens, stored exactly as integer billing units
//! per token. A new price applies to requests that start at or after its
//! effective time (default: now); every price stays recorded. The model `*`
//! sets the default for models without their own price; with none stored,
//! the configured default (the reference $0.01 / $0.03 per 1K) applies.
//! Changes are recorded in the audit log under the organisation `*`, by the
//! same operation as the web admin page (`service::manage::set_price`).

use std::path::Path;

use anyhow::{bail, Context};
use billing::Money;
use store::{Store, StoredPrice};

use crate::commands::keys::{with_store, StoreArgs};

/// The flags of `parlance prices`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with prices.
#[derive(clap::Subcommand)]
pub enum Action {
    /// Record a model's prices (USD per `--per` tokens).
    Set {
        /// The model id as clients send it, or `*` for the default.
        model: String,
        /// Input (prompt) price.
        #[arg(long)]
        input: String,
        /// Output (completion) price.
        #[arg(long)]
        output: String,
        /// Cached input price (default: the input price).
        #[arg(long)]
        cached_input: Option<String>,
        /// Tokens the prices are per: 1k or 1m.
        #[arg(long, default_value = "1k")]
        per: String,
        /// When it takes effect: unix milliseconds (default: now).
        #[arg(long)]
        effective_at: Option<i64>,
    },
    /// List every recorded price, USD per 1K tokens.
    List,
}

/// Runs one `prices` action.
pub fn run(
    args: Args,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
) -> anyhow::Result<()> {
    with_store(
        &args.store,
        data_dir_flag,
        default_data_dir,
        |store| async move { act(args.action, &store).await },
    )
}

/// The exact per-token price, in billing units, of `price` USD per `per` tokens.
fn per_token(price: &str, per: u64) -> anyhow::Result<i64> {
    service::manage::per_token_units(price, per)
        .with_context(|| format!("{price:?} per {per} tokens is not an exact non-negative price"))
}

fn per_1k(units: i64) -> String {
    let per_1k = Money::from_i64_units(units)
        .checked_mul(1000)
        .map_or_else(|_| "overflow".to_owned(), Money::to_decimal_string);
    format!("${per_1k}")
}

async fn act(action: Action, store: &Store) -> anyhow::Result<()> {
    match action {
        Action::Set {
            model,
            input,
            output,
            cached_input,
            per,
            effective_at,
        } => {
            let per = match per.to_ascii_lowercase().as_str() {
                "1k" => 1_000,
                "1m" => 1_000_000,
                other => bail!("--per must be 1k or 1m, not {other:?}"),
            };
            let input_units = per_token(&input, per)?;
            let price = StoredPrice {
                model: model.clone(),
                effective_at: effective_at.unwrap_or_else(now_ms),
                input: input_units,
                cached_input: match &cached_input {
                    Some(text) => per_token(text, per)?,
                    None => input_units,
                },
                output: per_token(&output, per)?,
            };
            service::manage::set_price(store, &price, "cli").await?;
            print(&price);
        }
        Action::List => {
            println!("MODEL\tEFFECTIVE_AT_MS\tINPUT/1K\tCACHED/1K\tOUTPUT/1K");
            for price in store.list_prices().await? {
                print(&price);
            }
        }
    }
    Ok(())
}

fn print(price: &StoredPrice) {
    println!(
        "{}\t{}\t{}\t{}\t{}",
        price.model,
        price.effective_at,
        per_1k(price.input),
        per_1k(price.cached_input),
        per_1k(price.output)
    );
}

fn now_ms() -> i64 {
    billing::Timestamp::now().unix_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_per_token() {
        assert_eq!(per_token("0.01", 1000).unwrap(), 10_000_000);
        assert_eq!(per_token("0.15", 1_000_000).unwrap(), 150_000);
        assert_eq!(per_1k(10_000_000), "$0.010000");
    }
}
