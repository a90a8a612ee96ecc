//! The `huiying` command: the whole pipeline in one process (`huiying up`), or one service.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use huiying::cli::{ConfigArgs, run_service};

#[derive(Parser)]
#[command(
    version,
    about = "huiying (绘影): self-hosted image generation on NATS JetStream"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run all four services, starting a nats-server when none answers at [nats] url.
    Up,
    /// Run only the HTTP API.
    Ingest,
    /// Run only the generator.
    Generator,
    /// Run only the store.
    Store,
    /// Run only the mailer.
    Mailer,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = &cli.config;
    match cli.command {
        Command::Up => run_service("huiying up", args, huiying::up::run).await,
        Command::Ingest => run_service("ingest", args, huiying::ingest::run).await,
        Command::Generator => run_service("generator", args, huiying::generator::run).await,
        Command::Store => run_service("store", args, huiying::store::run).await,
        Command::Mailer => run_service("mailer", args, huiying::mailer::run).await,
    }
}
