//! huiying store: processes, writes and records pictures.
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "huiying store: processes, writes and records pictures")]
struct Args {
    #[command(flatten)]
    config: huiying::cli::ConfigArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    huiying::cli::run_service("store", &args.config, huiying::store::run).await
}
