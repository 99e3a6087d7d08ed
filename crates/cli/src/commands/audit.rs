//! `parlance audit`: an organisation's audit log (key creations,
//! revocations, rotations… with actor, time and before/after state), oldest
//! first, as a table or, with `--json`, the JSON list of
//! `GET /v1/organization/audit_logs` (both from `service::manage`).

use std::path::Path;

use service::manage;

use crate::commands::keys::{self, StoreArgs, DEFAULT_ORG};

/// The flags of `parlance audit`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Organisation name.
    #[arg(long, default_value = DEFAULT_ORG)]
    pub org: String,
    /// Print the API's JSON list (every entry, with before/after) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `parlance audit`.
pub fn run(
    args: Args,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
) -> anyhow::Result<()> {
    let (org, json) = (args.org.clone(), args.json);
    keys::with_store(
        &args.store,
        data_dir_flag,
        default_data_dir,
        |store| async move {
            let org_id = keys::org_id(&store, &org).await?;
            let entries = manage::all_audit(&store, &org_id).await?;
            if json {
                println!("{:#}", manage::audit_list_json(&entries, false));
                return Ok(());
            }
            println!("ID\tTIME\tACTOR\tTYPE\tTARGET");
            for entry in &entries {
                let e = &entry.entry;
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    manage::audit_id(entry),
                    manage::seconds(entry.created_at),
                    e.actor,
                    e.action,
                    e.target
                );
            }
            Ok(())
        },
    )
}
