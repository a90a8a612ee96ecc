//! Connecting to NATS: once (`huiying up` probes with it) or retrying until it answers,
//! with a login of the service's own and replies on its own inbox; and what a connection's
//! events are worth saying in the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{MIN_SERVER_VERSION, SetupError};
use crate::config::NatsConfig;

/// Connects, trying again every second until NATS answers or `shutdown` fires.
pub(super) async fn connect_retrying(
    config: &NatsConfig,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<async_nats::Client, SetupError> {
    retry_every_second("NATS", shutdown, || try_connect(config, name)).await
}

/// Tries `attempt` every second while it fails in a way that passes (NATS away, JetStream
/// without a leader), until it succeeds, fails for good, or `shutdown` fires.
pub(super) async fn retry_every_second<T, Attempt>(
    waiting_for: &str,
    shutdown: &CancellationToken,
    mut attempt: impl FnMut() -> Attempt,
) -> Result<T, SetupError>
where
    Attempt: Future<Output = Result<T, SetupError>>,
{
    loop {
        match attempt().await {
            Err(error @ (SetupError::Connect { .. } | SetupError::JetStream { .. })) => {
                tracing::warn!(%error, "waiting for {waiting_for}")
            }
            done => return done,
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(SetupError::Cancelled),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// How often the client asks the server whether it is still there.
const PING_INTERVAL: Duration = Duration::from_secs(2);

/// Connects once with the login in `config`, without retrying (`huiying up` probes with
/// it; [`Bus::connect`] retries it).
pub async fn try_connect(config: &NatsConfig, name: &str) -> Result<async_nats::Client, SetupError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .event_callback({
            let (name, connected_before): (Arc<str>, _) = (name.into(), Arc::new(AtomicBool::new(false)));
            move |event| log_connection_event(name.clone(), connected_before.clone(), event)
        })
        .connection_timeout(Duration::from_secs(3))
        // A server cut off by the network goes silent rather than closing the connection:
        // the client notices only when pings go unanswered. Every 2 s (not the default
        // 60) moves a service to another node of a cluster within seconds, inside ingest's
        // failover_wait (tests/api/partition.rs).
        .ping_interval(PING_INTERVAL)
        // Reconnect forever: services outlive NATS restarts without being restarted.
        .max_reconnects(None);
    if !config.user.is_empty() {
        options = options
            .user_and_password(config.user.clone(), config.password.expose().to_string())
            // Replies come to an inbox only this user may read (nats.conf allows each
            // service `_INBOX_<user>.>`, not everyone's `_INBOX.>`).
            .custom_inbox_prefix(format!("_INBOX_{}", config.user));
    }
    // Every server of the list is in the client's pool: it connects to one and
    // reconnects to whichever member answers.
    options
        .connect(config.url.urls())
        .await
        .map_err(|source| SetupError::Connect { url: config.url.to_string(), source })
}

/// What a connection's events are worth saying: nothing at the first connect (each
/// service says when it is ready), a warning when it is lost, a line when it is back.
async fn log_connection_event(name: Arc<str>, connected_before: Arc<AtomicBool>, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected if connected_before.swap(true, Ordering::SeqCst) => {
            tracing::info!(connection = %name, "connected to NATS again")
        }
        async_nats::Event::Connected => tracing::debug!(connection = %name, "connected to NATS"),
        async_nats::Event::Disconnected => {
            tracing::warn!(connection = %name, "lost the connection to NATS; reconnecting")
        }
        async_nats::Event::Closed | async_nats::Event::Draining => {
            tracing::debug!(connection = %name, %event, "NATS connection")
        }
        other => tracing::warn!(connection = %name, event = %other, "NATS connection"),
    }
}

/// Refuses servers older than [`MIN_SERVER_VERSION`].
pub fn check_server_version(url: &str, version: &str) -> Result<(), SetupError> {
    let mut parts = version.trim_start_matches('v').split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_SERVER_VERSION {
        return Err(SetupError::ServerTooOld { url: url.into(), found: version.into() });
    }
    Ok(())
}
