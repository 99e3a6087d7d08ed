//! `parlance invoice`: an organisation's monthly invoice, built by the same
//! function as `GET /v1/organization/invoices/{YYYY-MM}`
//! (`service::manage::invoice`, from the ledger rows of the month) and
//! printed as the same JSON, or as CSV.

use std::path::Path;

use anyhow::{bail, Context};
use service::manage;

use crate::commands::keys::{self, StoreArgs, DEFAULT_ORG};

/// The flags of `parlance invoice`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Organisation name.
    #[arg(long, default_value = DEFAULT_ORG)]
    pub org: String,
    /// The month billed, YYYY-MM (default: this month, UTC).
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// Output format: json or csv.
    #[arg(long, default_value = "json")]
    pub format: String,
}

/// Runs `parlance invoice`.
pub fn run(
    args: Args,
    data_dir_flag: Option<&Path>,
    default_data_dir: &Path,
) -> anyhow::Result<()> {
    let month = match &args.month {
        Some(text) => text
            .parse::<manage::Month>()
            .with_context(|| format!("--month {text:?} (write YYYY-MM)"))?,
        None => manage::Month::containing(manage::Timestamp::now()),
    };
    let csv = match args.format.as_str() {
        "json" => false,
        "csv" => true,
        other => bail!("--format {other:?}: use json or csv"),
    };
    let org = args.org.clone();
    keys::with_store(
        &args.store,
        data_dir_flag,
        default_data_dir,
        |store| async move {
            let org_id = keys::org_id(&store, &org).await?;
            let invoice = manage::invoice(&store, &org_id, month).await?;
            if csv {
                print!("{}", invoice.to_csv());
            } else {
                println!("{:#}", manage::invoice_json(&invoice)?);
            }
            Ok(())
        },
    )
}
