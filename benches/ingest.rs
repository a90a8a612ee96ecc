//! Ingest benchmark: how many jobs a second `POST /generate-image` (`Prefer:
//! respond-async`) accepts over 16 connections, beside a plain async-nats client
//! publishing the same events to a stream on the same server with 16 publishes in flight
//! (the tool a user would pick instead: JetStream without huiying). Both wait for
//! JetStream's acknowledgement; the server runs with `sync_interval: always`, as nats.conf
//! sets it. The rest of the pipeline is not running: this is ingest alone.
//!
//!     cargo bench --bench ingest
//!
//! Needs nats-server 2.10+ (`NATS_SERVER_BIN`, or `.huiying/bin/nats-server` from
//! scripts/install-nats-server.sh).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use huiying::config::Config;
use tokio_util::sync::CancellationToken;

const CONNECTIONS: usize = 16;
const REQUESTS: usize = 4000;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("nats.conf");
    let store = dir.path().join("js");
    std::fs::write(
        &conf,
        format!("listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?}\n sync_interval: always }}\n", store),
    )
    .unwrap();
    let program = std::env::var("NATS_SERVER_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.huiying/bin/nats-server").into());
    let mut nats =
        Command::new(program).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let client = wait_for_nats(&url).await;

    let mut config = Config::default();
    config.nats.url = url.parse().unwrap();
    config.server.images_dir = dir.path().join("images");
    config.server.max_queued_jobs = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(huiying::ingest::serve(listener, config, stop.clone()));
    let http = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    while http.get(format!("{address}/health")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Warm up both paths, then measure.
    let body = serde_json::json!({"prompt": "a lighthouse at dawn, watercolor", "model": "huiying/placeholder"});
    let post = |http: reqwest::Client, address: String, body: serde_json::Value| async move {
        let response =
            http.post(format!("{address}/generate-image")).header("Prefer", "respond-async").json(&body).send().await;
        assert_eq!(response.unwrap().status(), 202);
    };
    let _ = measure(200, |_| post(http.clone(), address.clone(), body.clone())).await;
    let ingest = measure(REQUESTS, |_| post(http.clone(), address.clone(), body.clone())).await;

    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.requested".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = serde_json::to_vec(&serde_json::json!({
        "version": 1, "id": uuid::Uuid::new_v4().to_string(), "prompt": "a lighthouse at dawn, watercolor",
        "model": "huiying/placeholder", "requested_at": "2026-12-02T08:00:00Z"
    }))
    .unwrap();
    let publish = |js: async_nats::jetstream::Context, payload: Vec<u8>| async move {
        let headers = async_nats::HeaderMap::from_iter([(
            "Nats-Msg-Id".parse().unwrap(),
            uuid::Uuid::new_v4().to_string().as_str().into(),
        )]);
        js.publish_with_headers("bench.requested", headers, payload.into()).await.unwrap().await.unwrap();
    };
    let _ = measure(200, |_| publish(js.clone(), payload.clone())).await;
    let nats_client = measure(REQUESTS, |_| publish(js.clone(), payload.clone())).await;

    println!("{CONNECTIONS} in flight, {REQUESTS} each, sync_interval: always");
    println!("huiying ingest (POST /generate-image): {}", ingest.describe());
    println!("async-nats JetStream publish:          {}", nats_client.describe());
    println!("ratio (ingest / client): {:.2}", ingest.rate / nats_client.rate);
    stop.cancel();
    let _ = nats.kill();
    let _ = nats.wait();
}

struct Measured {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

impl Measured {
    fn describe(&self) -> String {
        format!("{:.0}/s, p50 {:.1} ms, p99 {:.1} ms", self.rate, ms(self.p50), ms(self.p99))
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Runs `count` calls of `call`, `CONNECTIONS` at a time; their rate and latencies.
async fn measure<F, Fut>(count: usize, call: F) -> Measured
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count)));
    let start = Instant::now();
    let mut next = 0;
    let mut running = tokio::task::JoinSet::new();
    while next < count || !running.is_empty() {
        while next < count && running.len() < CONNECTIONS {
            let (call, latencies) = (call(next), latencies.clone());
            running.spawn(async move {
                let began = Instant::now();
                call.await;
                latencies.lock().unwrap().push(began.elapsed());
            });
            next += 1;
        }
        running.join_next().await.unwrap().unwrap();
    }
    let elapsed = start.elapsed();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Measured { rate: count as f64 / elapsed.as_secs_f64(), p50: at(0.5), p99: at(0.99) }
}

async fn wait_for_nats(url: &str) -> async_nats::Client {
    for _ in 0..100 {
        if let Ok(client) = async_nats::connect(url).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nats-server did not start at {url}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
