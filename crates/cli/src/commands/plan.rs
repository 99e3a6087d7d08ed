//! `parlance plan list|define|assign|show`: plans for people using the chat
//! app (built in: Free, $0 and 100K tokens a month, the default; Plus, $20
//! and 10M tokens a month), which member is on which, and what is left of
//! their monthly quota. Changes take effect on the next request and are
//! recorded in the audit log (actor `cli`).

use std::path::Path;

use anyhow::{bail, Context};
use billing::{AllowedModels, Money, Plan, Quota, Timestamp};
use service::manage::CLI_ACTOR;
use store::{Store, User};

use crate::commands::keys::{org_id, with_store, StoreArgs, DEFAULT_ORG};

/// The flags of `parlance plan`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with plans.
#[derive(clap::Subcommand)]
pub enum Action {
    /// List every plan.
    List,
    /// Define (or redefine) a plan.
    Define {
        /// Its id, e.g. `team`.
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// Price per month in USD.
        #[arg(long, default_value = "0")]
        price: String,
        /// Monthly token allowance (prompt + completion).
        #[arg(long, conflicts_with_all = ["messages", "unlimited"])]
        tokens: Option<u64>,
        /// Monthly message allowance.
        #[arg(long, conflicts_with = "unlimited")]
        messages: Option<u64>,
        /// No allowance limit.
        #[arg(long)]
        unlimited: bool,
        /// Only these models (comma-separated; default: every model).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
    },
    /// Put a member of an organisation on a plan, at once.
    Assign {
        /// Organisation name.
        #[arg(long, default_value = DEFAULT_ORG)]
        org: String,
        /// The member, by email or user id.
        #[arg(long)]
        user: String,
        /// The plan id.
        plan: String,
    },
    /// A member's plan and what is left of it this month.
    Show {
        /// Organisation name.
        #[arg(long, default_value = DEFAULT_ORG)]
        org: String,
        /// The member, by email or user id.
        #[arg(long)]
        user: String,
    },
}

/// Runs one `plan` action.
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

async fn member(store: &Store, org: &str, who: &str) -> anyhow::Result<User> {
    store
        .list_members(org)
        .await?
        .into_iter()
        .map(|(user, _)| user)
        .find(|user| user.id == who || user.email.eq_ignore_ascii_case(who))
        .with_context(|| format!("no member {who:?} in this organisation"))
}

fn describe(plan: &Plan) -> String {
    let quota = match plan.quota {
        Quota::Unlimited => "unlimited".to_owned(),
        Quota::Tokens(n) => format!("{n} tokens/month"),
        Quota::Messages(n) => format!("{n} messages/month"),
    };
    let models = match &plan.models {
        AllowedModels::All => "all models".to_owned(),
        AllowedModels::Only(models) => models.join(","),
    };
    format!(
        "{}\t{}\t${}/month\t{quota}\t{models}",
        plan.id,
        plan.name,
        plan.monthly_price.to_decimal_string()
    )
}

async fn act(action: Action, store: &Store) -> anyhow::Result<()> {
    match action {
        Action::List => {
            for plan in service::plans::plans(store).await? {
                println!("{}", describe(&plan));
            }
        }
        Action::Define {
            id,
            name,
            price,
            tokens,
            messages,
            unlimited,
            models,
        } => {
            let quota = match (tokens, messages, unlimited) {
                (Some(n), _, _) => Quota::Tokens(n),
                (_, Some(n), _) => Quota::Messages(n),
                (_, _, true) => Quota::Unlimited,
                _ => bail!("give --tokens N, --messages N or --unlimited"),
            };
            let monthly_price = Money::parse(&price)
                .with_context(|| format!("{price:?} is not an amount in USD"))?;
            let plan = Plan {
                name: name.unwrap_or_else(|| id.clone()),
                id,
                monthly_price,
                quota,
                models: if models.is_empty() {
                    AllowedModels::All
                } else {
                    AllowedModels::Only(models)
                },
            };
            service::plans::define(store, &plan, CLI_ACTOR).await?;
            println!("{}", describe(&plan));
        }
        Action::Assign { org, user, plan } => {
            let org = org_id(store, &org).await?;
            let user = member(store, &org, &user).await?;
            let plan = service::plans::assign(store, &org, &user.id, &plan, CLI_ACTOR).await?;
            eprintln!("{} is now on {}", user.email, plan.id);
        }
        Action::Show { org, user } => {
            let org = org_id(store, &org).await?;
            let user = member(store, &org, &user).await?;
            let (plan, remaining) =
                service::plans::remaining(store, &org, &user.id, Timestamp::now()).await?;
            println!("{}", describe(&plan));
            println!(
                "used this month: {} tokens, {} messages; remaining: {}",
                remaining.used.tokens,
                remaining.used.messages,
                remaining
                    .remaining
                    .map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
            );
        }
    }
    Ok(())
}
