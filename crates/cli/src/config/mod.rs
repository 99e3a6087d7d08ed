//! The typed configuration of `parlance serve` and how its layers combine:
//! built-in defaults < the TOML file < `PARLANCE_*` environment variables <
//! command-line flags.
//!
//! Each layer is a [`Layer`] whose fields are `None` where that layer says
//! nothing; [`resolve`] stacks them and fills what is left with the defaults.
//! The file is `--config FILE`, else `parlance.toml` in the data directory
//! when it exists; with neither, the defaults and the other layers apply
//! alone.
//!
//! - [`layer`]: the [`Layer`] type (the file's schema) and stacking;
//! - [`file`]: finding and reading `parlance.toml`;
//! - [`env`]: the `PARLANCE_*` variables;
//! - [`resolve`](mod@resolve): the defaults and the [`ServeConfig`] they make;
//! - [`checks`]: value rules shared by every source.

mod checks;
mod env;
mod file;
mod layer;
mod resolve;
#[cfg(test)]
mod tests;

pub use checks::parse_stall_ratio;
pub use file::locate;
pub use layer::Layer;
pub use resolve::{resolve, ServeConfig};
