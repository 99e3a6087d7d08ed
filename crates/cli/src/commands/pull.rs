//! `parlance pull NAME`: fetch a catalog model and verify it.

use std::path::Path;

#[derive(clap::Args)]
pub struct Args {
    /// Catalog name (see `parlance models`).
    pub name: String,
}

pub fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let spec = catalog::lookup(&args.name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown model '{}'; the catalog has: {}",
            args.name,
            catalog::model_names().join(", ")
        )
    })?;
    let path = catalog::pull(spec, data_dir, &mut crate::model_arg::print_progress)?;
    println!("{}", path.display());
    Ok(())
}
