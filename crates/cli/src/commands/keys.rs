//! `parlance keys create|list|revoke|rotate`: API keys in the store `serve`
//! uses (the same database URL resolution: `--database-url`, then
//! `PARLANCE_DATABASE_URL`, then `database_url` in the config file, then
//! `parlance.db` in the data directory), and [`with_store`], the store
//! opening the other administrative commands (`usage`, `invoice`, `audit`)
//! share.
//!
//! `create` and `rotate` print the new secret as their only line on stdout,
//! so that scripts can capture it; everything else goes to stderr. Every
//! create, revoke and rotation is written to the audit log with the actor
//! `cli`, through the same `service::manage` calls as the HTTP admin API.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use service::ensure_project;
use service::manage::{self, CLI_ACTOR};
use store::{KeyKind, NewApiKey, RateLimits, Store};

use crate::commands::{serve, usage};

pub use service::{DEFAULT_ORG, DEFAULT_PROJECT};

/// Where the store is: the flags every administrative command takes.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// The database (default: as `serve` resolves it) [env: PARLANCE_DATABASE_URL].
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// TOML config file (default: parlance.toml in the data directory, if it exists).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

/// The flags of `parlance keys`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with keys.
#[derive(clap::Subcommand)]
pub enum Action {
    /// Create a key (and its organisation and project, by name, if missing);
    /// prints the secret, once, as the only line on stdout.
    Create {
        /// Organisation name.
        #[arg(long, default_value = DEFAULT_ORG)]
        org: String,
        /// Project name inside the organisation.
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
        /// Display name of the key.
        #[arg(long, default_value = "")]
        name: String,
        /// An admin key: it may also use the organization API (keys, usage, costs, audit log).
        #[arg(long)]
        admin: bool,
        /// When the key stops working: a duration from now (`30d`, `12h`, `45m`)
        /// or an instant (`2027-01-31`, RFC 3339, unix seconds).
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// The only models the key may use, comma-separated (default: all).
        #[arg(long, value_delimiter = ',', value_name = "MODELS")]
        models: Option<Vec<String>>,
        /// The key's own limit of requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// The key's own limit of tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
    },
    /// List every key, masked, with its kind and status.
    List,
    /// Revoke a key by its id (`key_…`).
    Revoke {
        /// The key id, as `keys list` shows it.
        key_id: String,
    },
    /// Revoke a key and create its successor (same project, name, kind,
    /// expiry, models and limits); prints the new secret only.
    Rotate {
        /// The key id, as `keys list` shows it.
        key_id: String,
    },
    /// Set a key's own rate limits (a limit not given falls back to the
    /// project's or the server's; 0 means none).
    Limits {
        /// The key id, as `keys list` shows it.
        key_id: String,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
    },
}

/// Opens the store as `serve` would, runs `work` on it, and closes it.
pub fn with_store<F, Fut>(
    args: &StoreArgs,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let serve_args = serve::Args {
        config: args.config.clone(),
        database_url: args.database_url.clone(),
        ..serve::Args::default()
    };
    let settings = serve::settings(&serve_args, data_dir_flag, default_data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = serve::open_store(&settings.database_url, &settings.data_dir).await?;
        let result = work(store.clone()).await;
        store.close().await;
        result
    })
}

/// The id of the organisation called `name`, which must exist.
pub async fn org_id(store: &Store, name: &str) -> anyhow::Result<String> {
    match store.find_org_by_name(name).await? {
        Some(org) => Ok(org.id),
        None => bail!("no organisation named {name:?}"),
    }
}

/// Runs one `keys` action.
pub fn run(
    args: Args,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
) -> anyhow::Result<()> {
    let action = args.action;
    with_store(
        &args.store,
        data_dir_flag,
        default_data_dir,
        |store| async move { act(action, &store).await },
    )
}

/// The expiry `--expires` names, in unix ms: a duration from `now_ms`
/// (`30d`, `12h`, `45m`, `90s`) or an instant ([`usage::parse_instant`]).
pub fn parse_expires(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    let unit_ms = match text.chars().last() {
        Some('d') => Some(86_400_000),
        Some('h') => Some(3_600_000),
        Some('m') => Some(60_000),
        Some('s') => Some(1000),
        _ => None,
    };
    let at = match unit_ms {
        Some(unit) => {
            let count: i64 = text[..text.len() - 1]
                .parse()
                .with_context(|| format!("--expires {text:?}: not a duration such as 30d"))?;
            if count <= 0 {
                bail!("--expires {text:?}: the duration must be positive");
            }
            count
                .checked_mul(unit)
                .and_then(|d| now_ms.checked_add(d))
                .with_context(|| format!("--expires {text:?} is too far away"))?
        }
        None => usage::parse_instant(text).with_context(|| format!("--expires {text:?}"))?,
    };
    if at <= now_ms {
        bail!("--expires {text:?} is in the past");
    }
    Ok(at)
}

fn status(key: &store::ApiKey) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if key.is_active(store::now_ms()) {
        "active"
    } else {
        "expired"
    }
}

async fn act(action: Action, store: &Store) -> anyhow::Result<()> {
    match action {
        Action::Create {
            org,
            project,
            name,
            admin,
            expires,
            models,
            rpm,
            tpm,
        } => {
            let expires_at = expires
                .map(|e| parse_expires(&e, store::now_ms()))
                .transpose()?;
            if models
                .as_ref()
                .is_some_and(|m| m.iter().all(|m| m.trim().is_empty()))
            {
                bail!("--models must name at least one model");
            }
            let (org_id, project_id) = ensure_project(store, &org, &project).await?;
            let new = NewApiKey {
                project_id,
                name,
                expires_at,
                allowed_models: models,
                kind: if admin {
                    KeyKind::Admin
                } else {
                    KeyKind::Project
                },
                limits: RateLimits { rpm, tpm },
            };
            let (key, secret) = manage::create_key(store, &org_id, &new, CLI_ACTOR).await?;
            eprintln!(
                "created {} key {} in {org}/{project}",
                key.kind.as_str(),
                key.id
            );
            println!("{}", secret.expose());
        }
        Action::List => list(store).await?,
        Action::Revoke { key_id } => {
            let org_id = key_org(store, &key_id).await?;
            manage::revoke_key(store, &org_id, &key_id, CLI_ACTOR).await?;
            eprintln!("revoked {key_id}");
        }
        Action::Rotate { key_id } => {
            let org_id = key_org(store, &key_id).await?;
            let (key, secret) = match manage::rotate_key(store, &org_id, &key_id, CLI_ACTOR).await {
                Ok(rotated) => rotated,
                Err(err) if err.kind() == store::ErrorKind::NotFound => {
                    bail!("{key_id} is revoked; only an active key can be rotated")
                }
                Err(err) => return Err(err.into()),
            };
            eprintln!("rotated {key_id} into {}", key.id);
            println!("{}", secret.expose());
        }
        Action::Limits { key_id, rpm, tpm } => {
            let org_id = key_org(store, &key_id).await?;
            let limits = RateLimits { rpm, tpm };
            let key = manage::set_key_limits(store, &org_id, &key_id, limits, CLI_ACTOR).await?;
            let show = |n: Option<u64>| n.map_or_else(|| "default".to_owned(), |n| n.to_string());
            eprintln!(
                "{key_id}: rpm {}, tpm {}",
                show(key.limits.rpm),
                show(key.limits.tpm)
            );
        }
    }
    Ok(())
}

/// The organisation of key `key_id` (a system look-up: the CLI administers
/// every organisation).
async fn key_org(store: &Store, key_id: &str) -> anyhow::Result<String> {
    match store.find_key(key_id).await {
        Ok(key) => Ok(key.org_id),
        Err(err) if err.kind() == store::ErrorKind::NotFound => bail!("no key {key_id}"),
        Err(err) => Err(err.into()),
    }
}

async fn list(store: &Store) -> anyhow::Result<()> {
    println!("ID\tORG\tPROJECT\tNAME\tKIND\tKEY\tCREATED\tLAST USED\tEXPIRES\tSTATUS");
    let dash = |t: Option<i64>| t.map_or("-".to_owned(), |t| (t / 1000).to_string());
    for org in store.list_orgs().await? {
        let org_name = &org.name;
        let projects = store.list_projects(&org.id).await?;
        for key in store.list_keys(&org.id, None).await? {
            let project = projects
                .iter()
                .find(|p| p.id == key.project_id)
                .map_or(key.project_id.as_str(), |p| p.name.as_str());
            println!(
                "{}\t{org_name}\t{project}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                key.id,
                key.name,
                key.kind.as_str(),
                key.redacted,
                key.created_at / 1000,
                dash(key.last_used_at),
                dash(key.expires_at),
                status(&key),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_takes_durations_and_instants() {
        let now = 1_767_225_600_000;
        assert_eq!(parse_expires("30d", now).unwrap(), now + 30 * 86_400_000);
        assert_eq!(parse_expires("2h", now).unwrap(), now + 7_200_000);
        assert_eq!(parse_expires("2026-01-02", now).unwrap(), now + 86_400_000);
        assert!(parse_expires("0d", now).is_err());
        assert!(parse_expires("2025-12-31", now).is_err());
        assert!(parse_expires("soon", now).is_err());
    }
}
