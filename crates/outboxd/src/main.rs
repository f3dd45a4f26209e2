//! The `outboxd` command line. The pipeline behind `run` arrives with the Kafka sink.

mod cli;

use clap::{Parser, Subcommand};

/// Relays a Postgres transactional outbox to Kafka, exactly once.
#[derive(Debug, Parser)]
#[command(name = "outboxd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version and exit.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("outboxd {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
