//! `parlance projects list|create|limits`: the projects of an organisation
//! and their rate limits (requests and tokens per minute over all their keys
//! together). Limit changes are recorded in the audit log (actor `cli`).

use std::path::Path;

use anyhow::bail;
use store::{RateLimits, Store};

use crate::commands::keys::{org_id, with_store, StoreArgs, DEFAULT_ORG};
use service::ensure_project;

/// The flags of `parlance projects`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with projects.
#[derive(clap::Subcommand)]
pub enum Action {
    /// List an organisation's projects with their limits.
    List {
        /// Organisation name.
        #[arg(long, default_value = DEFAULT_ORG)]
        org: String,
    },
    /// Create a project (and its organisation, if missing); prints its id.
    Create {
        /// Organisation name.
        #[arg(long, default_value = DEFAULT_ORG)]
        org: String,
        /// Project name.
        project: String,
    },
    /// Set a project's rate limits (a limit not given falls back to the
    /// server's per-project default; 0 means none).
    Limits {
        /// Organisation name.
        #[arg(long, default_value = DEFAULT_ORG)]
        org: String,
        /// Project name.
        project: String,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
    },
}

/// Runs one `projects` action.
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

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "default".to_owned(), |n| n.to_string())
}

async fn act(action: Action, store: &Store) -> anyhow::Result<()> {
    match action {
        Action::List { org } => {
            let org = org_id(store, &org).await?;
            println!("ID\tNAME\tRPM\tTPM");
            for project in store.list_projects(&org).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    project.id,
                    project.name,
                    show(project.limits.rpm),
                    show(project.limits.tpm)
                );
            }
        }
        Action::Create { org, project } => {
            let (_, project_id) = ensure_project(store, &org, &project).await?;
            println!("{project_id}");
        }
        Action::Limits {
            org,
            project,
            rpm,
            tpm,
        } => {
            let org = org_id(store, &org).await?;
            let Some(found) = store.find_project_by_name(&org, &project).await? else {
                bail!("no project named {project:?}");
            };
            let limits = RateLimits { rpm, tpm };
            let after =
                service::manage::set_project_limits(store, &org, &found.id, limits, "cli").await?;
            eprintln!(
                "{project}: rpm {}, tpm {}",
                show(after.limits.rpm),
                show(after.limits.tpm)
            );
        }
    }
    Ok(())
}
