//! `huiying up`: the whole pipeline in one process.
//!
//! Uses the NATS at `[nats] url` when one answers there and is 2.10 or newer, or starts
//! one ([`nats_server`]); then runs every service, and prints the banner once they all
//! answer.

mod nats_server;

use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus;
use crate::config::{Config, PLACEHOLDER_MODEL, TlsMode};
use crate::service::Service;
use nats_server::ensure_nats;
pub use nats_server::{
    ADMIN_ENV_FILE, BUILT_IN_NATS_CONF, NatsLogins, NatsServerProgram, cluster_node_conf, find_nats_server, free_port,
    nats_conf,
};

/// Runs every service until `shutdown` fires or one of them fails.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (nats_server, nats_note) = ensure_nats(&mut config).await?;

    // Each service logs in as its own NATS user when we started nats-server with logins.
    let as_user = |user: &str| {
        let mut config = config.clone();
        if let Some(logins) = nats_server.as_ref().and_then(|server| server.logins.as_ref()) {
            config.nats.user = user.to_string();
            config.nats.password = logins.password(user);
        }
        config
    };
    let services = shutdown.child_token();
    let mut tasks = JoinSet::new();
    for service in Service::ALL {
        tasks
            .spawn(named(service.name(), crate::service::run(service, as_user(service.nats_user()), services.clone())));
    }

    // The banner once every service answers: before it, a new user would try a server
    // that is not listening yet.
    let banner = tokio::spawn(banner_when_ready(config.clone(), nats_note));

    let mut first_error = None;
    while let Some(finished) = tasks.join_next().await {
        let (name, result) = finished.context("a service panicked")?;
        if let Err(error) = result {
            first_error.get_or_insert_with(|| error.context(format!("{name} stopped")));
        }
        // One service down means the pipeline is down: stop the others too.
        services.cancel();
    }
    banner.abort();
    if let Some(mut started) = nats_server {
        // Stop the nats-server we started and wait until it is gone, so that its port and
        // data folder are free when we return (every acknowledged write is already on disk).
        let _ = started.process.kill().await;
    }
    first_error.map_or(Ok(()), Err)
}

async fn named(
    name: &'static str,
    service: impl Future<Output = anyhow::Result<()>>,
) -> (&'static str, anyhow::Result<()>) {
    (name, service.await)
}

/// How long `huiying up` waits for every service before it prints the banner anyway.
const READY_WAIT: Duration = Duration::from_secs(60);

/// Prints the banner once ingest accepts connections and every other service answers
/// its ping (or, after [`READY_WAIT`], with the ones that do not named).
async fn banner_when_ready(config: Config, nats_note: String) {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    let mut waiting = Service::ALL.to_vec();
    if let Ok(client) = bus::try_connect(&config.nats, "huiying-up").await {
        let ingest = (listen_host(&config.server.host), config.server.port);
        while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
            let mut still = Vec::new();
            for service in waiting {
                let answers = match service.ping_subject() {
                    Some(subject) => client.request(subject, Default::default()).await.is_ok(),
                    None => tokio::net::TcpStream::connect(ingest).await.is_ok(),
                };
                if !answers {
                    still.push(service);
                }
            }
            waiting = still;
            if !waiting.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    print_banner(&config, &nats_note, &waiting);
}

/// Where to reach a server listening on `host` from this machine.
fn listen_host(host: &str) -> &str {
    match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" | "[::]" => "::1",
        host => host,
    }
}

fn print_banner(config: &Config, nats_note: &str, not_answering: &[Service]) {
    let server = &config.server;
    let base = server.public_base_url();
    let mail = if config.smtp.enable {
        let tls = match config.smtp.effective_tls() {
            TlsMode::Tls => "implicit TLS",
            TlsMode::Starttls | TlsMode::Auto => "STARTTLS",
            TlsMode::None => "no TLS",
        };
        format!("SMTP {}:{} ({tls}) → {}", config.smtp.host, config.smtp.port, config.smtp.to.join(", "))
    } else if !config.smtp.outbox_dir.as_os_str().is_empty() {
        format!(
            "SMTP disabled ([smtp] enable): each mail is written as an .eml file to {}",
            config.smtp.outbox_dir.display()
        )
    } else {
        // As the original: mail off is no mail, and no file either.
        "mail is off ([smtp] enable = false): nothing is sent or written (set [smtp] outbox_dir to see \
         each mail as a file, or enable SMTP)"
            .to_string()
    };
    let model = if config.api_keys.openrouter_api_key.is_set() {
        format!("OpenRouter, default model {}", config.models.default_openrouter_model)
    } else {
        format!("{} (offline placeholder, not AI; set OPENROUTER_API_KEY for real images)", PLACEHOLDER_MODEL)
    };
    match not_answering {
        [] => println!("huiying is up."),
        services => println!(
            "huiying is starting; not answering yet after {} s: {}",
            READY_WAIT.as_secs(),
            services.iter().map(|service| service.name()).collect::<Vec<_>>().join(", ")
        ),
    }
    println!("  web page & API : {base}/  (listening on {}:{})", server.host, server.port);
    println!("  API reference  : {base}/docs  (OpenAPI 3.1 at {base}/openapi.json)");
    println!("  NATS           : {nats_note}");
    println!("  images         : {}   records: {}", server.images_dir.display(), config.database.path.display());
    println!("  mail           : {mail}");
    println!("  image model    : {model}");
    let access = match server.api_keys().len() {
        0 if server.host == "127.0.0.1" || server.host == "localhost" => {
            "no API keys: open to programs on this machine".to_string()
        }
        0 => format!("no API keys: open to anyone who reaches {} (set [[server.keys]])", server.host),
        keys => format!("{keys} API key(s) required (Authorization: Bearer); each sees its own jobs"),
    };
    println!("  access         : {access}");
    println!("Try:");
    println!(
        "  curl -X POST {base}/generate-image -H 'Content-Type: application/json' -d '{{\"prompt\": \"测试绘影邮件通知功能\"}}'"
    );
}
