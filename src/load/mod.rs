//! `huiying load`: a load test of the whole pipeline.
//!
//! Starts a nats-server (with nats.conf and its per-service logins) and the services
//! as separate processes in a temporary folder, on the offline placeholder model with
//! mail written to the outbox. Submits N jobs at a given rate over HTTP, waits until every
//! job has its mail, then reports throughput, latency percentiles per stage (from the
//! stream's own timestamps) and each process's memory and CPU time per job.

mod report;
mod timeline;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::bus;
use crate::config::Config;
use crate::service::{ADMIN_USER, Service};
use crate::up::{NatsLogins, free_port};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Jobs to submit.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Jobs submitted per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Keep the temporary folder (logs of every process, database, pictures, outbox, and
    /// each job's times in `jobs.csv`).
    #[arg(long)]
    pub keep: bool,
    /// Run on a three-node nats-server cluster on this machine, everything with three
    /// replicas (compare with a run without it).
    #[arg(long)]
    pub cluster: bool,
    /// Load a pipeline that already runs (its HTTP address) instead of starting one; NATS
    /// as `[nats]` says (NATS_URL, and an admin's NATS_USER / NATS_PASSWORD), which the
    /// stage latencies are read from. No CPU or memory figures: its processes are not ours.
    #[arg(long, conflicts_with = "cluster")]
    pub against: Option<String>,
}

/// One started process whose memory we watch.
struct Process {
    name: &'static str,
    child: Child,
    /// Resident memory seen while running, in KiB: (seconds since start, RSS).
    samples: Vec<(f64, u64)>,
    /// CPU time used before the first job was submitted (start-up is not the jobs' cost).
    cpu_before: Duration,
}

pub async fn run(config: Config, args: LoadArgs) -> anyhow::Result<()> {
    if args.jobs == 0 || args.rate <= 0.0 {
        bail!("--jobs and --rate must be above 0");
    }
    if let Some(base) = &args.against {
        return run_against(&config, base, &args).await;
    }
    let dir = tempfile::tempdir()?;
    let logins = NatsLogins::random();
    let http_port = free_port()?;

    let mut processes = Vec::new();
    let (url, replicas) = if args.cluster {
        let route_ports = [free_port()?, free_port()?, free_port()?];
        let mut urls = Vec::new();
        for (name, route_port) in ["node-a", "node-b", "node-c"].into_iter().zip(route_ports) {
            let node_dir = dir.path().join(name);
            std::fs::create_dir_all(&node_dir)?;
            let conf = node_dir.join("nats.conf");
            std::fs::write(&conf, crate::up::cluster_node_conf(name, route_port, &route_ports))?;
            let port = free_port()?;
            processes.push(start_nats(&config, &conf, &node_dir, port, &logins).await?);
            urls.push(format!("nats://127.0.0.1:{port}"));
        }
        (urls.join(","), 3)
    } else {
        let port = free_port()?;
        let conf = crate::up::nats_conf(&config, dir.path())?;
        processes.push(start_nats(&config, &conf, dir.path(), port, &logins).await?);
        (format!("nats://127.0.0.1:{port}"), 1)
    };
    let admin = connect_admin(&url, &logins).await?;

    let config_file = write_service_config(dir.path(), &url, replicas, http_port)?;
    let exe = std::env::current_exe()?;
    for service in Service::ALL {
        let name = service.name();
        let child = Command::new(&exe)
            .arg("--config")
            .arg(&config_file)
            .arg(name)
            .current_dir(dir.path())
            .env("NATS_USER", service.nats_user())
            .env("NATS_PASSWORD", logins.password(service.nats_user()).expose())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), name)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        processes.push(Process { name, child, samples: Vec::new(), cpu_before: Duration::ZERO });
    }
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    wait_until_healthy(&http, &base).await?;
    let nats = if args.cluster { "a three-node cluster, 3 replicas" } else { "one nats-server" };
    println!("huiying load: {} jobs at {}/s on {nats}, pipeline in {}", args.jobs, args.rate, dir.path().display());

    for process in processes.iter_mut() {
        process.cpu_before = process.child.id().and_then(report::cpu_time).unwrap_or_default();
    }
    let processes = Arc::new(Mutex::new(processes));
    let started = Instant::now();
    let sampler = tokio::spawn(sample_memory(processes.clone(), started));

    let (accepted, submitted_in, finished_in) = submit_and_wait(&http, &base, &args, &admin, started).await?;
    sampler.abort();

    let jobs = timeline::timelines(&admin).await?;
    let stages = timeline::stage_latencies(&jobs);
    let mut processes = processes.lock().await;
    report::report(&args, &accepted, submitted_in, finished_in, &stages, &mut processes);
    for process in processes.iter_mut() {
        let _ = process.child.start_kill();
    }
    if args.keep {
        timeline::write(dir.path(), &jobs)?;
        println!("  kept {} (each job's times in jobs.csv)", dir.keep().display());
    }
    Ok(())
}

/// Loads the pipeline at `base` (started by someone else: `benches/three_hosts.py`).
async fn run_against(config: &Config, base: &str, args: &LoadArgs) -> anyhow::Result<()> {
    let admin = bus::try_connect(&config.nats, "huiying-load").await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    wait_until_healthy(&http, base).await?;
    println!("huiying load: {} jobs at {}/s against {base}", args.jobs, args.rate);
    let (accepted, submitted_in, finished_in) = submit_and_wait(&http, base, args, &admin, Instant::now()).await?;
    let stages = timeline::stage_latencies(&timeline::timelines(&admin).await?);
    report::report(args, &accepted, submitted_in, finished_in, &stages, &mut []);
    Ok(())
}

/// Submits the jobs and waits until each accepted one has its mail (beyond those the mail
/// log held before); returns each answer's time, and when after `started` the last job
/// was submitted and the last mail written.
async fn submit_and_wait(
    http: &reqwest::Client,
    base: &str,
    args: &LoadArgs,
    admin: &async_nats::Client,
    started: Instant,
) -> anyhow::Result<(Vec<Duration>, Duration, Duration)> {
    let mails_before = mails_logged(&jetstream::new(admin.clone())).await?;
    let accepted = submit(http, base, args).await?;
    let submitted_in = started.elapsed();
    wait_for_mails(admin, mails_before + accepted.len()).await?;
    Ok((accepted, submitted_in, started.elapsed()))
}

/// A nats-server with `conf`, its JetStream data in `dir`.
async fn start_nats(
    config: &Config,
    conf: &Path,
    dir: &Path,
    port: u16,
    logins: &NatsLogins,
) -> anyhow::Result<Process> {
    let program = crate::up::find_nats_server(&config.nats.server_bin)?;
    let nats_conf =
        std::fs::canonicalize(conf).with_context(|| format!("finding {} ([nats] server_config)", conf.display()))?;
    // Absolute: nats-server runs in the temporary folder.
    let mut command = Command::new(std::fs::canonicalize(&program.path).unwrap_or(program.path));
    logins.pass_to(&mut command);
    let child = command
        .arg("-c")
        .arg(nats_conf)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log_file(dir, "nats-server")?)
        .kill_on_drop(true)
        .spawn()
        .context("starting nats-server")?;
    Ok(Process { name: "nats-server", child, samples: Vec::new(), cpu_before: Duration::ZERO })
}

/// The admin's connection, once JetStream answers (on a cluster: once it has a leader).
async fn connect_admin(url: &str, logins: &NatsLogins) -> anyhow::Result<async_nats::Client> {
    let mut nats = crate::config::NatsConfig {
        url: url.parse().map_err(anyhow::Error::msg)?,
        user: ADMIN_USER.into(),
        ..Default::default()
    };
    nats.password = logins.password(ADMIN_USER);
    for _ in 0..300 {
        if let Ok(client) = bus::try_connect(&nats, "huiying-load").await
            && jetstream::new(client.clone()).query_account().await.is_ok()
        {
            return Ok(client);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nats-server did not start at {url}")
}

/// The services' configuration: defaults, placeholder model, mail to the outbox.
fn write_service_config(dir: &Path, nats_url: &str, replicas: usize, http_port: u16) -> anyhow::Result<PathBuf> {
    let mut config = Config::default();
    config.server.port = http_port;
    config.server.images_dir = dir.join("images");
    config.database.path = dir.join("huiying.db");
    config.smtp.outbox_dir = dir.join("outbox");
    config.nats.url = nats_url.parse().map_err(anyhow::Error::msg)?;
    config.nats.replicas = replicas;
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string(&config)?)?;
    Ok(path)
}

async fn wait_until_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    // Every service up, not only ingest: a job sent while the mailer still sets up waits
    // for it, and its latency would be the start-up's, not the pipeline's.
    for _ in 0..300 {
        if let Ok(answer) = http.get(format!("{base}/health")).send().await
            && let Ok(health) = answer.json::<serde_json::Value>().await
            && health["status"] == "ok"
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the pipeline at {base} did not become healthy (every service up) within 30 s")
}

/// Submits the jobs at the rate asked; returns the answer time of each accepted one.
async fn submit(http: &reqwest::Client, base: &str, args: &LoadArgs) -> anyhow::Result<Vec<Duration>> {
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..args.jobs {
        ticker.tick().await;
        let request = http
            .post(format!("{base}/generate-image"))
            .header("Prefer", "respond-async")
            .json(&serde_json::json!({"prompt": format!("load test picture {n}")}));
        requests.spawn(async move {
            let sent = Instant::now();
            let response = request.send().await;
            (sent.elapsed(), response.map(|r| r.status().as_u16()))
        });
    }
    let mut accepted = Vec::with_capacity(args.jobs);
    let mut refused: HashMap<String, usize> = HashMap::new();
    while let Some(done) = requests.join_next().await {
        match done? {
            (took, Ok(202)) => accepted.push(took),
            (_, Ok(status)) => *refused.entry(format!("HTTP {status}")).or_default() += 1,
            (_, Err(error)) => *refused.entry(error.to_string()).or_default() += 1,
        }
    }
    if !refused.is_empty() {
        println!("  not accepted: {refused:?}");
    }
    Ok(accepted)
}

/// Waits until the mail log holds one entry per accepted job.
async fn wait_for_mails(admin: &async_nats::Client, expected: usize) -> anyhow::Result<()> {
    let js = jetstream::new(admin.clone());
    let mut last = (0, Instant::now());
    loop {
        let mailed = mails_logged(&js).await?;
        if mailed >= expected {
            return Ok(());
        }
        if mailed != last.0 {
            last = (mailed, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            bail!("stuck at {mailed} of {expected} mails for a minute");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Entries in the mail log: one per job mailed.
async fn mails_logged(js: &jetstream::Context) -> anyhow::Result<usize> {
    let mut stream = js.get_stream(format!("KV_{}", crate::contract::MAIL_BUCKET)).await?;
    Ok(stream.info().await?.state.messages as usize)
}

/// Samples every process's resident memory once a second.
async fn sample_memory(processes: Arc<Mutex<Vec<Process>>>, started: Instant) {
    loop {
        {
            let mut processes = processes.lock().await;
            for process in processes.iter_mut() {
                if let Some(rss) = process.child.id().and_then(|pid| report::proc_status_kib(pid, "VmRSS")) {
                    process.samples.push((started.elapsed().as_secs_f64(), rss));
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Where a process's log goes: `<name>.log` in the load test's folder.
fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    Ok(Stdio::from(std::fs::File::create(dir.join(format!("{name}.log")))?))
}
