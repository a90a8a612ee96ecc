//! huiying generator: draws requested pictures with the image model.
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "huiying generator: draws requested pictures with the image model")]
struct Args {
    #[command(flatten)]
    config: huiying::cli::ConfigArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    huiying::cli::run_service("generator", &args.config, huiying::generator::run).await
}
