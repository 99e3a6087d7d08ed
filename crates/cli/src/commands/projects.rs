//! `parlance projects list|create|limits|guardrails`: the projects of an
//! organisation, their rate limits (requests and tokens per minute over all
//! their keys together) and their guardrails (moderated input and output:
//! `service::guardrails`). Changes are recorded in the audit log (actor
//! `cli`).

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
    /// Show or set a project's guardrails: moderated input (a flagged
    /// request is refused with `content_policy_violation`) and output (a
    /// flagged answer ends with `content_filter`). A running server reads
    /// the change within 5 seconds.
    Guardrails {
        /// Organisation name.
        #[arg(long, default_value = DEFAULT_ORG)]
        org: String,
        /// Project name.
        project: String,
        /// Moderate input: on or off (unchanged when not given).
        #[arg(long, value_parser = on_off)]
        input: Option<bool>,
        /// Moderate output: on or off (unchanged when not given).
        #[arg(long, value_parser = on_off)]
        output: Option<bool>,
    },
}

fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?}: say on or off")),
    }
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
        Action::Guardrails {
            org,
            project,
            input,
            output,
        } => {
            let org = org_id(store, &org).await?;
            let Some(found) = store.find_project_by_name(&org, &project).await? else {
                bail!("no project named {project:?}");
            };
            let mut g = store.project_guardrails(&org, &found.id).await?;
            if input.is_some() || output.is_some() {
                g.input = input.unwrap_or(g.input);
                g.output = output.unwrap_or(g.output);
                g = service::guardrails::set(store, &org, &found.id, g, "cli").await?;
            }
            let word = |on: bool| if on { "on" } else { "off" };
            println!(
                "{project}: input {}, output {}",
                word(g.input),
                word(g.output)
            );
        }
    }
    Ok(())
}
