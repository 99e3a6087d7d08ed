//! `parlance models`: the catalog and what is pulled.

use std::path::Path;

pub fn run(data_dir: &Path) -> anyhow::Result<()> {
    let default = catalog::default_model().name;
    println!("{:<24} {:<8} {:>8}  DESCRIPTION", "NAME", "PULLED", "SIZE");
    for (spec, path) in catalog::list(data_dir) {
        let mark = if spec.name == default {
            " (default)"
        } else {
            ""
        };
        println!(
            "{:<24} {:<8} {:>5} MB  {}{mark}",
            spec.name,
            if path.is_some() { "yes" } else { "no" },
            spec.size >> 20,
            spec.description
        );
    }
    println!(
        "\nmodels folder: {}",
        catalog::models_dir(data_dir).display()
    );
    Ok(())
}
