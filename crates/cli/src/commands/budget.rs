//! `parlance budget set|top-up|show|delete`: hard and soft spending limits
//! on an organisation, one of its projects or one of its keys, monthly or
//! prepaid. Amounts are US dollars as exact decimals (`25`, `0.50`).
//! Every change is recorded in the audit log (actor `cli`), by the same
//! operations as the HTTP API's (`service::budgets`).

use std::path::Path;

use anyhow::{bail, Context};
use billing::Money;
use store::{BudgetKind, BudgetScope, BudgetStatus, Store};

use crate::commands::keys::{org_id, with_store, StoreArgs, DEFAULT_ORG};

/// The flags of `parlance budget`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub action: Action,
}

/// Which scope a budget command names: the organisation unless a project
/// or a key is given.
#[derive(clap::Args, Clone)]
pub struct ScopeArgs {
    /// Organisation name.
    #[arg(long, default_value = DEFAULT_ORG)]
    pub org: String,
    /// A project of the organisation, by name.
    #[arg(long, conflicts_with = "key")]
    pub project: Option<String>,
    /// A key of the organisation, by id (`key_…`).
    #[arg(long)]
    pub key: Option<String>,
}

/// What to do with budgets.
#[derive(clap::Subcommand)]
pub enum Action {
    /// Set (create or replace) the budget of a scope.
    Set {
        #[command(flatten)]
        scope: ScopeArgs,
        /// A prepaid balance (drawn down for good) instead of a monthly budget.
        #[arg(long)]
        prepaid: bool,
        /// Hard limit in USD: requests whose worst case would pass it are
        /// refused with 429 insufficient_quota (for --prepaid: the credit).
        #[arg(long)]
        hard: Option<String>,
        /// Soft limit in USD: reaching it is logged and posted to the
        /// soft-limit webhook, once per period.
        #[arg(long)]
        soft: Option<String>,
    },
    /// Add credit (USD) to a prepaid budget.
    TopUp {
        #[command(flatten)]
        scope: ScopeArgs,
        /// The amount in USD.
        amount: String,
    },
    /// Show the organisation's budgets: limits, spent, held, available.
    Show {
        /// Organisation name.
        #[arg(long, default_value = DEFAULT_ORG)]
        org: String,
    },
    /// Remove the budget of a scope.
    Delete {
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

/// Runs one `budget` action.
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

/// The audit log's actor for changes made here.
const CLI_ACTOR: &str = "cli";

/// Dollars to billing units, refusing negatives and amounts a column cannot hold.
fn dollars(text: &str) -> anyhow::Result<i64> {
    service::budgets::parse_usd("amount", text).map_err(|err| anyhow::anyhow!("{err}"))
}

fn usd(units: i64) -> String {
    format!("${}", Money::from_i64_units(units).to_decimal_string())
}

/// The (organisation id, scope, scope id) named on the command line.
async fn resolve(
    store: &Store,
    scope: &ScopeArgs,
) -> anyhow::Result<(String, BudgetScope, String)> {
    let org = org_id(store, &scope.org).await?;
    if let Some(project) = &scope.project {
        let Some(found) = store.find_project_by_name(&org, project).await? else {
            bail!("no project named {project:?} in {:?}", scope.org);
        };
        return Ok((org, BudgetScope::Project, found.id));
    }
    if let Some(key) = &scope.key {
        store
            .get_key(&org, key)
            .await
            .with_context(|| format!("no key {key} in {:?}", scope.org))?;
        return Ok((org, BudgetScope::Key, key.clone()));
    }
    Ok((org.clone(), BudgetScope::Org, org))
}

fn print(status: &BudgetStatus) {
    let b = &status.budget;
    let limit = |n: Option<i64>| n.map_or_else(|| "-".to_owned(), usd);
    println!(
        "{}\t{}\t{}\t{}\thard {}\tsoft {}\tspent {}\theld {}\tavailable {}",
        b.scope.as_str(),
        b.scope_id,
        b.kind.as_str(),
        status.period,
        limit(b.hard_limit),
        limit(b.soft_limit),
        usd(status.spent),
        usd(status.reserved),
        status
            .available()
            .map_or_else(|| "unlimited".to_owned(), usd),
    );
}

async fn act(action: Action, store: &Store) -> anyhow::Result<()> {
    match action {
        Action::Set {
            scope,
            prepaid,
            hard,
            soft,
        } => {
            if hard.is_none() && soft.is_none() {
                bail!("give --hard, --soft or both");
            }
            let (org, scope, id) = resolve(store, &scope).await?;
            let kind = if prepaid {
                BudgetKind::Prepaid
            } else {
                BudgetKind::Monthly
            };
            let hard = hard.as_deref().map(dollars).transpose()?;
            let soft = soft.as_deref().map(dollars).transpose()?;
            let status =
                service::budgets::set(store, &org, CLI_ACTOR, (scope, &id), kind, hard, soft)
                    .await?;
            print(&status);
        }
        Action::TopUp { scope, amount } => {
            let (org, scope, id) = resolve(store, &scope).await?;
            let amount = dollars(&amount)?;
            let status = service::budgets::top_up(store, &org, CLI_ACTOR, (scope, &id), amount)
                .await
                .context("top-ups need a prepaid budget (budget set --prepaid)")?;
            print(&status);
        }
        Action::Show { org } => {
            let org = org_id(store, &org).await?;
            for status in store.list_budgets(&org).await? {
                print(&status);
            }
        }
        Action::Delete { scope } => {
            let (org, scope, id) = resolve(store, &scope).await?;
            service::budgets::delete(store, &org, CLI_ACTOR, (scope, &id))
                .await
                .with_context(|| format!("there is no budget on {} {id}", scope.as_str()))?;
            eprintln!("deleted the budget on {} {id}", scope.as_str());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_amounts_are_exact_and_non_negative() {
        assert_eq!(dollars("0.01").unwrap(), 10_000_000_000);
        assert_eq!(dollars("20").unwrap(), 20_000_000_000_000);
        assert!(dollars("-1").is_err());
        assert!(dollars("abc").is_err());
        assert_eq!(usd(10_000_000_000), "$0.010000");
    }
}
