//! `parlance keys create|list|revoke`: API keys in the store `serve` uses
//! (the same database URL resolution: `--database-url`, then
//! `PARLANCE_DATABASE_URL`, then `database_url` in the config file, then
//! `parlance.db` in the data directory).
//!
//! `create` prints the new secret as its only line on stdout, so that
//! scripts can capture it; everything else goes to stderr.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use store::{NewApiKey, Store};

use crate::commands::serve;
use crate::directory::ensure_project;

/// The organisation `keys create` uses when none is named.
pub const DEFAULT_ORG: &str = "default";
/// The project `keys create` uses when none is named.
pub const DEFAULT_PROJECT: &str = "default";

/// The flags of `parlance keys`.
#[derive(clap::Args)]
pub struct Args {
    /// The database (default: as `serve` resolves it) [env: PARLANCE_DATABASE_URL].
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// TOML config file (default: parlance.toml in the data directory, if it exists).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
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
    },
    /// List every key, masked.
    List,
    /// Revoke a key by its id (`key_…`).
    Revoke {
        /// The key id, as `keys list` shows it.
        key_id: String,
    },
}

/// Runs one `keys` action.
pub fn run(
    args: Args,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
) -> anyhow::Result<()> {
    let serve_args = serve::Args {
        host: None,
        port: None,
        models: Vec::new(),
        threads: None,
        config: args.config.clone(),
        database_url: args.database_url.clone(),
    };
    let settings = serve::settings(&serve_args, data_dir_flag, default_data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = serve::open_store(&settings.database_url, &settings.data_dir).await?;
        let result = act(args.action, &store).await;
        store.close().await;
        result
    })
}

async fn act(action: Action, store: &Store) -> anyhow::Result<()> {
    match action {
        Action::Create { org, project, name } => {
            let (org_id, project_id) = ensure_project(store, &org, &project).await?;
            let new = NewApiKey {
                project_id,
                name,
                ..NewApiKey::default()
            };
            let (key, secret) = store.create_key(&org_id, &new).await?;
            eprintln!("created {} in {org}/{project}", key.id);
            println!("{}", secret.expose());
        }
        Action::List => {
            println!("ID\tORG\tPROJECT\tNAME\tKEY\tCREATED\tLAST USED\tSTATUS");
            for org in store.list_orgs().await? {
                let org_name = &org.name;
                let projects = store.list_projects(&org.id).await?;
                for key in store.list_keys(&org.id, None).await? {
                    let project = projects
                        .iter()
                        .find(|p| p.id == key.project_id)
                        .map_or(key.project_id.as_str(), |p| p.name.as_str());
                    let status = if key.revoked_at.is_some() {
                        "revoked"
                    } else if key.is_active(store::now_ms()) {
                        "active"
                    } else {
                        "expired"
                    };
                    println!(
                        "{}\t{org_name}\t{project}\t{}\t{}\t{}\t{}\t{status}",
                        key.id,
                        key.name,
                        key.redacted,
                        key.created_at / 1000,
                        key.last_used_at
                            .map_or("-".to_owned(), |t| (t / 1000).to_string()),
                    );
                }
            }
        }
        Action::Revoke { key_id } => {
            let org_id = match store.find_key(&key_id).await {
                Ok(key) => key.org_id,
                Err(err) if err.kind() == store::ErrorKind::NotFound => bail!("no key {key_id}"),
                Err(err) => return Err(err.into()),
            };
            store.revoke_key(&org_id, &key_id).await?;
            eprintln!("revoked {key_id}");
        }
    }
    Ok(())
}
