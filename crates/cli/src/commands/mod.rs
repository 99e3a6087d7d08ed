//! One module per `parlance` subcommand.

pub mod audit;
pub mod bench;
pub mod budget;
pub mod chat;
pub mod generate;
pub mod invoice;
pub mod keys;
pub mod models;
pub mod perplexity;
pub mod plan;
pub mod prices;
pub mod projects;
pub mod pull;
pub mod serve;
pub mod tokenize;
pub mod usage;
