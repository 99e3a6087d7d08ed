//! The `parlance` binary: command-line parsing, logging set-up, and one
//! module per subcommand. Each subcommand is a thin shell over the library
//! crates (catalog, engine, server, store).

mod commands;
mod config;
mod embedding_models;
mod model_arg;
mod open_files;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "parlance",
    version,
    about = "Self-hosted ChatGPT and OpenAI-compatible API platform"
)]
struct Cli {
    /// Where models and data live (default: $PARLANCE_DATA_DIR, else $XDG_DATA_HOME/parlance, else ~/.local/share/parlance).
    #[arg(long, global = true, env = "PARLANCE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download a catalog model into the data directory and verify its checksum.
    Pull(commands::pull::Args),
    /// List the catalog and which models are pulled.
    Models,
    /// Generate a continuation of a prompt; the text goes to stdout.
    Generate(commands::generate::Args),
    /// Chat with a model in the terminal (history kept for the session).
    Chat(commands::chat::Args),
    /// Read text on stdin and print its token ids.
    Tokenize(commands::tokenize::Args),
    /// Measure prompt-processing and generation speed.
    Bench(commands::bench::Args),
    /// Perplexity over a text file (as llama-perplexity), and KL divergence against saved log-probabilities.
    Perplexity(commands::perplexity::Args),
    /// Serve the OpenAI-compatible HTTP API.
    Serve(commands::serve::Args),
    /// Create, list, revoke and rotate API keys.
    Keys(commands::keys::Args),
    /// Show an organisation's usage per time bucket.
    Usage(commands::usage::Args),
    /// Print an organisation's monthly invoice (JSON or CSV).
    Invoice(commands::invoice::Args),
    /// Show an organisation's audit log.
    Audit(commands::audit::Args),
    /// Set, top up, show and delete spending limits (monthly or prepaid).
    Budget(commands::budget::Args),
    /// Set and list per-model prices.
    Prices(commands::prices::Args),
    /// List and create projects, and set their rate limits.
    Projects(commands::projects::Args),
    /// List, define and assign plans for people, and show what is left.
    Plan(commands::plan::Args),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARLANCE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let data_dir = catalog::data_dir(cli.data_dir.as_deref());
    let result = match cli.command {
        Command::Pull(a) => commands::pull::run(a, &data_dir),
        Command::Models => commands::models::run(&data_dir),
        Command::Generate(a) => commands::generate::run(a, &data_dir),
        Command::Chat(a) => commands::chat::run(a, &data_dir),
        Command::Tokenize(a) => commands::tokenize::run(a, &data_dir),
        Command::Bench(a) => commands::bench::run(a, &data_dir),
        Command::Perplexity(a) => commands::perplexity::run(a, &data_dir),
        Command::Serve(a) => commands::serve::run(a, cli.data_dir.as_deref(), &data_dir),
        Command::Keys(a) => commands::keys::run(a, cli.data_dir.as_deref(), &data_dir),
        Command::Usage(a) => commands::usage::run(a, cli.data_dir.as_deref(), &data_dir),
        Command::Invoice(a) => commands::invoice::run(a, cli.data_dir.as_deref(), &data_dir),
        Command::Audit(a) => commands::audit::run(a, cli.data_dir.as_deref(), &data_dir),
        Command::Budget(a) => commands::budget::run(a, cli.data_dir.as_deref(), &data_dir),
        Command::Prices(a) => commands::prices::run(a, cli.data_dir.as_deref(), &data_dir),
        Command::Projects(a) => commands::projects::run(a, cli.data_dir.as_deref(), &data_dir),
        Command::Plan(a) => commands::plan::run(a, cli.data_dir.as_deref(), &data_dir),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
