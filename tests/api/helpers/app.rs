//! The whole pipeline for one test.

use std::collections::HashMap;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use huiying::config::{Config, Secret, TlsMode};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;

/// A running service and the token that stops it.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The whole pipeline, started for one test.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub nats: async_nats::Client,
    pub smtp: SmtpServer,
    pub config: Config,
    services: HashMap<&'static str, Vec<Running>>,
    _dir: TempDir,
    pub nats_server: NatsServer,
    /// The other nodes, when the pipeline runs on a cluster.
    pub nats_peers: Vec<NatsServer>,
}

impl TestApp {
    /// The pipeline with defaults: offline placeholder, SMTP over STARTTLS with AUTH.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_, _| {}).await
    }

    /// The pipeline with `tweak` applied to its configuration.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config, &SmtpServer)) -> Self {
        Self::spawn_on(NatsServer::start().await, tweak).await
    }

    /// The pipeline on a nats-server the test started.
    pub async fn spawn_on(nats_server: NatsServer, tweak: impl FnOnce(&mut Config, &SmtpServer)) -> Self {
        Self::spawn_on_nodes(vec![nats_server], tweak).await
    }

    /// The pipeline on a three-node cluster: every service given all three URLs, and
    /// everything created with three replicas.
    pub async fn spawn_on_cluster(cluster: NatsCluster, tweak: impl FnOnce(&mut Config, &SmtpServer)) -> Self {
        Self::spawn_on_nodes(cluster.nodes, |config, smtp| {
            config.nats.replicas = 3;
            tweak(config, smtp)
        })
        .await
    }

    /// Every nats-server of the test (one, or a cluster's nodes).
    pub fn nats_nodes_mut(&mut self) -> impl Iterator<Item = &mut NatsServer> {
        std::iter::once(&mut self.nats_server).chain(self.nats_peers.iter_mut())
    }

    async fn spawn_on_nodes(mut nodes: Vec<NatsServer>, tweak: impl FnOnce(&mut Config, &SmtpServer)) -> Self {
        let urls = nodes.iter().map(|n| n.url.clone()).collect::<Vec<_>>().join(",");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()))
            .with_test_writer()
            .try_init();
        let smtp = SmtpServer::start().await;
        let dir = TempDir::new().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());

        let mut config = Config::default();
        config.server.port = listener.local_addr().unwrap().port();
        config.server.public_url = address.clone();
        config.server.images_dir = dir.path().join("images");
        config.server.timeout = Duration::from_secs(30);
        config.database.path = dir.path().join("huiying.db");
        config.nats.url = urls.parse().unwrap();
        config = logged_in_as(&config, "admin");
        config.generator.retry_delay = Duration::from_secs(0);
        config.smtp.enable = true;
        config.smtp.host = "localhost".into();
        config.smtp.port = smtp.starttls_port;
        config.smtp.tls = TlsMode::Starttls;
        config.smtp.username = SMTP_USER.into();
        config.smtp.password = Secret::new(SMTP_PASSWORD);
        config.smtp.from = format!("绘影 <{SMTP_USER}>");
        config.smtp.to = vec![MAIL_TO.into()];
        config.smtp.ca_file = certificates().ca.display().to_string();
        config.smtp.retry_delay = Duration::from_secs(0);
        config.smtp.outbox_dir = dir.path().join("outbox");
        config.smtp.templates_dir = Path::new(REPO).join("templates");
        tweak(&mut config, &smtp);

        let mut app = Self {
            address,
            http: reqwest::Client::new(),
            nats: connect_as(&urls, "admin").await.unwrap(),
            smtp,
            config,
            services: HashMap::new(),
            _dir: dir,
            nats_server: nodes.remove(0),
            nats_peers: nodes,
        };
        let ingest_config = logged_in_as(&app.config, "ingest");
        app.track("ingest", move |stop| huiying::ingest::serve(listener, ingest_config, stop));
        for service in ["generator", "store", "mailer", "webhook"] {
            app.start_service(service);
        }
        app.wait_until_healthy().await;
        app
    }

    fn track<F, Fut>(&mut self, name: &'static str, run: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(stop.clone()));
        self.services.entry(name).or_default().push(Running { stop, task });
    }

    /// Starts (another instance of) a service; several instances share the work.
    pub fn start_service(&mut self, name: &'static str) {
        self.start_service_with(name, |_| {});
    }

    /// Starts another instance of a service with its own settings (another host's
    /// working folder, say).
    pub fn start_service_with(&mut self, name: &'static str, tweak: impl FnOnce(&mut Config)) {
        // Each service as its own NATS user, as `huiying up` runs them.
        let mut config = logged_in_as(&self.config, name);
        tweak(&mut config);
        match name {
            "generator" => self.track(name, move |stop| huiying::generator::run(config, stop)),
            "store" => self.track(name, move |stop| huiying::store::run(config, stop)),
            "mailer" => self.track(name, move |stop| huiying::mailer::run(config, stop)),
            "webhook" => self.track(name, move |stop| huiying::webhook::run(config, stop)),
            other => panic!("no service {other}"),
        }
    }

    /// Starts another ingest (as on another host behind a load balancer); returns its address.
    pub async fn start_ingest(&mut self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let config = logged_in_as(&self.config, "ingest");
        self.track("ingest", move |stop| huiying::ingest::serve(listener, config, stop));
        let url = format!("{address}/health");
        wait_for("the second ingest to be healthy", Duration::from_secs(30), || async {
            self.http.get(&url).send().await.ok()?.status().is_success().then_some(())
        })
        .await;
        address
    }

    /// Stops every instance of a service gracefully and waits until they are gone.
    pub async fn stop_service(&mut self, name: &'static str) {
        for running in self.services.remove(name).unwrap_or_default() {
            running.stop.cancel();
            running.task.await.unwrap().unwrap();
        }
    }

    async fn wait_until_healthy(&self) {
        let url = format!("{}/health", self.address);
        wait_for("ingest to be healthy", Duration::from_secs(30), || async {
            let response = self.http.get(&url).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    pub async fn post_generate(&self, body: serde_json::Value) -> reqwest::Response {
        self.http.post(format!("{}/generate-image", self.address)).json(&body).send().await.unwrap()
    }

    /// `POST /generate-image` with `Prefer: respond-async`, ready to send (or add headers to).
    pub fn request_async(&self, body: serde_json::Value) -> reqwest::RequestBuilder {
        self.http.post(format!("{}/generate-image", self.address)).header("Prefer", "respond-async").json(&body)
    }

    /// Submits a job without waiting for it (`Prefer: respond-async`); returns its id.
    pub async fn submit(&self, body: serde_json::Value) -> String {
        let response = self.request_async(body).send().await.unwrap();
        assert_eq!(response.status(), 202);
        let answer: serde_json::Value = response.json().await.unwrap();
        answer["id"].as_str().unwrap().to_string()
    }

    pub async fn post_generate_raw(&self, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/generate-image", self.address))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn get_job(&self, id: &str) -> reqwest::Response {
        self.http.get(format!("{}/jobs/{id}", self.address)).send().await.unwrap()
    }

    /// Waits until the job is completed, failed or cancelled, and returns its state.
    pub async fn wait_for_job(&self, id: &str) -> serde_json::Value {
        wait_for(&format!("job {id} to finish"), Duration::from_secs(60), || async {
            let state: serde_json::Value = self.get_job(id).await.json().await.ok()?;
            matches!(state["status"].as_str(), Some("completed" | "failed" | "cancelled")).then_some(state)
        })
        .await
    }

    /// Publishes raw bytes to a subject through JetStream, as any NATS client could.
    pub async fn publish(&self, subject: &str, payload: &str) {
        let js = async_nats::jetstream::new(self.nats.clone());
        js.publish(subject.to_string(), payload.to_string().into()).await.unwrap().await.unwrap();
    }

    /// Waits until `consumer` has nothing pending or unacknowledged: every event so far
    /// has been fully handled, so counting side effects now is final.
    pub async fn wait_until_consumer_idle(&self, consumer: &str) {
        let js = async_nats::jetstream::new(self.nats.clone());
        wait_for(&format!("consumer {consumer} to be idle"), Duration::from_secs(60), || {
            let js = js.clone();
            async move {
                let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                    js.get_stream(huiying::contract::STREAM).await.ok()?.get_consumer(consumer).await.ok()?;
                let info = consumer.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await
    }

    /// The test's configuration as a TOML file, for the binaries.
    pub fn config_file(&self) -> PathBuf {
        let path = self._dir.path().join("config.toml");
        std::fs::write(&path, toml::to_string(&self.config).unwrap()).unwrap();
        path
    }

    /// Runs `huiying <args>` with the test's configuration and waits for it.
    pub fn huiying(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_huiying"));
        command.arg("--config").arg(self.config_file()).args(args).env_remove("HUIYING_CONFIG");
        // The `huiying mail` commands need no more than the mailer's NATS rights.
        command.env("NATS_USER", "mailer").env("NATS_PASSWORD", nats_password("mailer"));
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    /// Starts the real mailer binary with the test's configuration.
    pub fn spawn_mailer_process(&self) -> Child {
        self.spawn_process("mailer", &[])
    }

    /// Starts a service's own program (`huiying-mailer`, `huiying-store`: what the
    /// systemd units run) with the test's configuration, logged in to NATS as that
    /// service, with `env` added.
    pub fn spawn_process(&self, service: &str, env: &[(&str, &str)]) -> Child {
        let mut command = Command::new(service_program(service));
        command
            .arg("--config")
            .arg(self.config_file())
            .env_remove("HUIYING_CONFIG")
            .env("NATS_USER", service)
            .env("NATS_PASSWORD", nats_password(service))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        command.spawn().unwrap()
    }

    /// How many events the stream holds on `subject` (each job publishes each once).
    pub async fn count_events(&self, subject: &str) -> u64 {
        use futures::StreamExt;
        let js = async_nats::jetstream::new(self.nats.clone());
        let stream = js.get_stream(huiying::contract::STREAM).await.unwrap();
        let mut info = stream.info_with_subjects(subject).await.unwrap();
        let mut count = 0;
        while let Some(entry) = info.next().await {
            count += entry.unwrap().1 as u64;
        }
        count
    }

    /// The picture files in the images folder (not the thumbnails in its `thumbs/`).
    pub fn image_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.config.server.images_dir) else { return Vec::new() };
        let files = entries.map(|e| e.unwrap()).filter(|e| e.file_type().unwrap().is_file());
        let mut names: Vec<String> = files.map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    pub fn kill_nats(&mut self) {
        self.nats_server.kill();
    }

    /// Every entry of the notification log (`huiying_mail` bucket).
    pub async fn mail_log(&self) -> Vec<serde_json::Value> {
        use futures::StreamExt;
        let js = async_nats::jetstream::new(self.nats.clone());
        let bucket = js.get_key_value(huiying::contract::MAIL_BUCKET).await.unwrap();
        let keys: Vec<String> = bucket.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
        let mut entries = Vec::new();
        for key in keys {
            let value = bucket.get(&key).await.unwrap().unwrap();
            entries.push(serde_json::from_slice(&value).unwrap());
        }
        entries
    }

    /// The records table, read straight from the SQLite file.
    pub fn records(&self) -> Vec<HashMap<String, String>> {
        let db = rusqlite::Connection::open(&self.config.database.path).unwrap();
        let mut statement = db.prepare("SELECT * FROM image_records ORDER BY id").unwrap();
        let columns: Vec<String> = statement.column_names().iter().map(|c| c.to_string()).collect();
        statement
            .query_map([], |row| {
                let mut record = HashMap::new();
                for (i, column) in columns.iter().enumerate() {
                    let value: rusqlite::types::Value = row.get(i)?;
                    let text = match value {
                        rusqlite::types::Value::Null => String::new(),
                        rusqlite::types::Value::Integer(n) => n.to_string(),
                        rusqlite::types::Value::Real(f) => f.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        rusqlite::types::Value::Blob(_) => "<blob>".into(),
                    };
                    record.insert(column.clone(), text);
                }
                Ok(record)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

/// The program of its own that `service` runs as.
pub fn service_program(service: &str) -> &'static str {
    match service {
        "ingest" => env!("CARGO_BIN_EXE_huiying-ingest"),
        "generator" => env!("CARGO_BIN_EXE_huiying-generator"),
        "store" => env!("CARGO_BIN_EXE_huiying-store"),
        "mailer" => env!("CARGO_BIN_EXE_huiying-mailer"),
        "webhook" => env!("CARGO_BIN_EXE_huiying-webhook"),
        other => panic!("no service {other}"),
    }
}
