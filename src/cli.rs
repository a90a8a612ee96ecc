//! What every binary does before and after its service runs: read the configuration
//! (a mistake is one line on stderr and exit code 2), start logging, and turn Ctrl-C or
//! SIGTERM into a graceful shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};

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

/// Logs to stderr at `[logging] level` (`RUST_LOG` wins when set).
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.logging.level))
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
