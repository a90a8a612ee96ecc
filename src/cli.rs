//! What every binary does before and after its service runs: read the configuration
//! (a mistake is one line on stderr and exit code 2), start logging, and turn Ctrl-C or
//! SIGTERM into a graceful shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::contract::services::Service;

/// The option every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (default: $HUIYING_CONFIG, else ./config.toml when present).
    #[arg(long, short, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Loads the configuration or explains in one line why not.
pub fn load_config(args: &ConfigArgs, program: &str) -> Result<Config, ExitCode> {
    match config::load(args.config.as_deref()) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("{program}: note: {warning}");
            }
            Ok(loaded.config)
        }
        Err(error) => {
            eprintln!("{program}: {error}");
            Err(ExitCode::from(2))
        }
    }
}

/// Logs to stderr at `[logging] level` (`RUST_LOG` wins when set, as it is). The NATS
/// client's own lines (a dozen "connected" at every start) are kept to warnings unless
/// the level names `async_nats`: huiying says itself when a connection is lost and back.
pub fn init_logging(config: &Config) {
    let level = &config.logging.level;
    let level = match level.contains("async_nats") {
        true => level.clone(),
        false => format!("{level},async_nats=warn"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// A token that fires on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        fire.cancel();
    });
    token
}

/// Runs one service the way every binary does.
pub async fn run_service<F, Fut>(program: &str, args: &ConfigArgs, run: F) -> ExitCode
where
    F: FnOnce(Config, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match load_config(args, program) {
        Ok(config) => config,
        Err(code) => return code,
    };
    init_logging(&config);
    let shutdown = shutdown_on_signal();
    crate::telemetry::handle();
    if !config.metrics.listen.trim().is_empty() {
        let (listen, stop) = (config.metrics.listen.trim().to_string(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = crate::telemetry::serve(listen, stop).await {
                tracing::error!(%error, "metrics listener stopped");
            }
        });
    }
    match run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The whole of a service's program of its own (`huiying-store` ...): the same as
/// `huiying store`, with `--config` and `--help`.
pub async fn service_main(service: Service) -> ExitCode {
    use clap::{Args, Command, FromArgMatches};
    // The about line after the arguments: augmenting sets the arguments' own doc as one.
    let command = ConfigArgs::augment_args(Command::new(service.program()))
        .about(service.about())
        .version(env!("CARGO_PKG_VERSION"));
    let args = match ConfigArgs::from_arg_matches(&command.get_matches()) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    run_service(service.program(), &args, |config, shutdown| crate::service::run(service, config, shutdown)).await
}
