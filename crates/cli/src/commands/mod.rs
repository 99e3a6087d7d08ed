//! One module per `parlance` subcommand.

pub mod bench;
pub mod chat;
pub mod generate;
pub mod keys;
pub mod models;
pub mod pull;
pub mod serve;
pub mod tokenize;
