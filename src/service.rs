//! Running a service by its name ([`Service`]): what `huiying <service>`, its program of
//! its own (`huiying-store` ...), `huiying up` and `huiying load` start.

use tokio_util::sync::CancellationToken;

use crate::config::Config;
pub use crate::contract::services::Service;
use crate::{generator, ingest, mailer, store, webhook};

/// Runs `service` until `shutdown` fires.
pub async fn run(service: Service, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    match service {
        Service::Ingest => ingest::run(config, shutdown).await,
        Service::Generator => generator::run(config, shutdown).await,
        Service::Store => store::run(config, shutdown).await,
        Service::Mailer => mailer::run(config, shutdown).await,
        Service::Webhook => webhook::run(config, shutdown).await,
    }
}

/// The NATS users nats.conf defines: one per service, plus `admin` for the tools.
pub const NATS_USERS: [&str; 6] = ["ingest", "generator", "store", "mailer", "webhook", ADMIN_USER];

/// The NATS user of `huiying mail`, the nats CLI and the load tool.
pub const ADMIN_USER: &str = "admin";
