//! huiying mailer: emails completions and failures.
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "huiying mailer: emails completions and failures")]
struct Args {
    #[command(flatten)]
    config: huiying::cli::ConfigArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    huiying::cli::run_service("mailer", &args.config, huiying::mailer::run).await
}
