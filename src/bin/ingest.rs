//! huiying ingest: the HTTP API and web page.
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "huiying ingest: the HTTP API and web page")]
struct Args {
    #[command(flatten)]
    config: huiying::cli::ConfigArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    huiying::cli::run_service("ingest", &args.config, huiying::ingest::run).await
}
