//! The five services by name: what `huiying <service>` runs, what `huiying up` and
//! `huiying load` start, and which NATS user (in `nats.conf`) each logs in as.

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::{generator, ingest, mailer, store, webhook};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Ingest,
    Generator,
    Store,
    Mailer,
    Webhook,
}

impl Service {
    /// In the order a job travels.
    pub const ALL: [Service; 5] =
        [Service::Ingest, Service::Generator, Service::Store, Service::Mailer, Service::Webhook];

    /// Its name: the subcommand, the log name, and its NATS user.
    pub fn name(self) -> &'static str {
        match self {
            Service::Ingest => "ingest",
            Service::Generator => "generator",
            Service::Store => "store",
            Service::Mailer => "mailer",
            Service::Webhook => "webhook",
        }
    }

    /// The NATS user `nats.conf` gives this service.
    pub fn nats_user(self) -> &'static str {
        self.name()
    }

    /// Runs the service until `shutdown` fires.
    pub async fn run(self, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
        match self {
            Service::Ingest => ingest::run(config, shutdown).await,
            Service::Generator => generator::run(config, shutdown).await,
            Service::Store => store::run(config, shutdown).await,
            Service::Mailer => mailer::run(config, shutdown).await,
            Service::Webhook => webhook::run(config, shutdown).await,
        }
    }
}

/// The NATS users nats.conf defines: one per service, plus `admin` for the tools.
pub const NATS_USERS: [&str; 6] = ["ingest", "generator", "store", "mailer", "webhook", ADMIN_USER];

/// The NATS user of `huiying mail`, the nats CLI and the load tool.
pub const ADMIN_USER: &str = "admin";
