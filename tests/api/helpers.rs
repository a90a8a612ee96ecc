//! Starts the real pipeline for a test: a nats-server (2.10+) on a free port with a temp
//! JetStream folder, a real SMTP server (aiosmtpd: STARTTLS, implicit TLS, AUTH) with a
//! certificate made for the test, and the four services on free ports. Everything is
//! stopped and deleted when the returned [`TestApp`] is dropped.

use std::collections::HashMap;

use mail_parser::MimeHeaders;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use huiying::config::{Config, Secret, TlsMode};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const SMTP_USER: &str = "sender@example.com";
pub const SMTP_PASSWORD: &str = "test-auth-code-16";
pub const MAIL_TO: &str = "user@example.com";

/// Waits until `check` returns `Some`, polling; panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A nats-server 2.10+ of the test's own, killed on drop.
pub struct NatsServer {
    process: Option<Child>,
    pub url: String,
    port: u16,
    store: TempDir,
    config: PathBuf,
}

/// The nats-server program: `HUIYING_TEST_NATS_SERVER`, else `.huiying/bin/nats-server`
/// (scripts/install-nats-server.sh puts it there), else the one on PATH if 2.10+.
pub fn nats_server_program() -> PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let mut candidates = vec![];
            if let Ok(path) = std::env::var("HUIYING_TEST_NATS_SERVER") {
                candidates.push(PathBuf::from(path));
            }
            candidates.push(Path::new(REPO).join(".huiying/bin/nats-server"));
            candidates.push(PathBuf::from("nats-server"));
            for candidate in candidates {
                let Ok(output) = Command::new(&candidate).arg("--version").output() else {
                    continue;
                };
                let text = String::from_utf8_lossy(&output.stdout).to_string();
                let version = text.split_whitespace().find(|w| w.starts_with('v')).unwrap_or("v0").to_string();
                if huiying::bus::check_server_version("", &version).is_ok() {
                    return candidate;
                }
            }
            panic!("the tests need nats-server 2.10 or newer: run scripts/install-nats-server.sh");
        })
        .clone()
}

impl NatsServer {
    /// A server with the project's own nats.conf, so the tests check it (and its logins) too.
    pub async fn start() -> Self {
        Self::start_with(&Path::new(REPO).join("nats.conf")).await
    }

    /// A server with another configuration file.
    pub async fn start_with(config: &Path) -> Self {
        let mut server = Self {
            process: None,
            url: String::new(),
            port: free_port(),
            store: TempDir::new().unwrap(),
            config: config.to_path_buf(),
        };
        server.restart().await;
        server
    }

    /// Starts the server (again) on its port with its JetStream folder.
    pub async fn restart(&mut self) {
        assert!(self.process.is_none(), "nats-server is already running");
        let (port, store) = (self.port, &self.store);
        let mut command = Command::new(nats_server_program());
        for user in huiying::service::NATS_USERS.iter().chain(&["webhooks"]) {
            command.env(huiying::up::NatsLogins::env_var(user), nats_password(user));
        }
        let process = command
            .arg("-c")
            .arg(&self.config)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(store.path())
            .stdout(Stdio::null())
            // Permission violations show up here; HUIYING_TEST_NATS_LOG keeps it for a look.
            .stderr(match std::env::var_os("HUIYING_TEST_NATS_LOG") {
                Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .expect("starting nats-server");
        let url = format!("nats://127.0.0.1:{port}");
        let probe = url.clone();
        wait_for("nats-server to accept connections", Duration::from_secs(15), || {
            let url = probe.clone();
            async move { connect_as(&url, "admin").await.ok() }
        })
        .await;
        self.process = Some(process);
        self.url = url;
    }
}

/// The password of a nats.conf user in the tests' nats-servers.
pub fn nats_password(user: &str) -> String {
    format!("test-{user}-password")
}

/// Connects to NATS as one of the users of nats.conf.
pub async fn connect_as(url: &str, user: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::with_user_and_password(user.into(), nats_password(user)).connect(url).await
}

/// `config` logged in to NATS as `user`.
pub fn logged_in_as(config: &Config, user: &str) -> Config {
    let mut config = config.clone();
    config.nats.user = user.into();
    config.nats.password = Secret::new(nats_password(user));
    config
}

impl NatsServer {
    /// Kills the server at once, as a crash would; [`restart`](Self::restart) brings it back.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA and a certificate for `localhost` / 127.0.0.1 signed by it, made once per test binary.
pub struct TestCertificates {
    _dir: TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn certificates() -> &'static TestCertificates {
    static CERTS: OnceLock<TestCertificates> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let run = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("the tests need the openssl command");
            assert!(status.success(), "openssl {args:?} failed");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=huiying test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.path().join("server.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        TestCertificates {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            _dir: dir,
        }
    })
}

/// A real SMTP server (aiosmtpd) whose accepted mails land in a folder.
pub struct SmtpServer {
    process: Option<Child>,
    pub starttls_port: u16,
    pub tls_port: u16,
    /// Speaks SMTP without offering STARTTLS.
    pub plain_port: u16,
    /// After this many mails, every RCPT waits `pause_seconds` once (0: never).
    pub pause_after: usize,
    pub pause_seconds: f64,
    maildir: TempDir,
    /// While this file exists, the server answers every RCPT with 451.
    busy_file: PathBuf,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let mut server = Self::stopped();
        server.restart().await;
        server
    }

    /// A server with ports and a mail folder, not yet listening.
    pub fn stopped() -> Self {
        let maildir = TempDir::new().unwrap();
        Self {
            busy_file: maildir.path().join("busy.flag"),
            process: None,
            starttls_port: free_port(),
            tls_port: free_port(),
            plain_port: free_port(),
            pause_after: 0,
            pause_seconds: 0.0,
            maildir,
        }
    }

    /// Stops the server, as an outage would; its mail folder stays.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// (Re)starts the server on the same ports and mail folder.
    pub async fn restart(&mut self) {
        self.stop();
        let certs = certificates();
        let process = Command::new("python3")
            .arg(Path::new(REPO).join("tests/support/smtp_server.py"))
            .args(["--starttls-port", &self.starttls_port.to_string(), "--tls-port", &self.tls_port.to_string()])
            .args(["--plain-port", &self.plain_port.to_string()])
            .args(["--pause-after", &self.pause_after.to_string(), "--pause-seconds", &self.pause_seconds.to_string()])
            .arg("--busy-file")
            .arg(&self.busy_file)
            .arg("--cert")
            .arg(&certs.cert)
            .arg("--key")
            .arg(&certs.key)
            .args(["--user", SMTP_USER, "--password", SMTP_PASSWORD])
            .arg("--maildir")
            .arg(self.maildir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("the tests need python3 with aiosmtpd (pip install aiosmtpd)");
        self.process = Some(process);
        for port in [self.starttls_port, self.tls_port, self.plain_port] {
            wait_for("the SMTP server to listen", Duration::from_secs(15), || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()
            })
            .await;
        }
    }

    /// Makes the server answer 451 to every recipient (`true`) or serve normally again.
    pub fn set_busy(&self, busy: bool) {
        if busy {
            std::fs::write(&self.busy_file, b"busy").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.busy_file);
        }
    }

    /// Every mail accepted so far, in arrival order.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.maildir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| ReceivedMail::parse(&std::fs::read(p).unwrap())).collect()
    }

    /// Every accepted mail as the server stored it, headers and all.
    pub fn raw_mails(&self) -> Vec<String> {
        let mut paths: Vec<PathBuf> =
            std::fs::read_dir(self.maildir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        paths.iter().map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned()).collect()
    }

    /// Waits until at least `count` mails arrived and returns all of them.
    pub async fn wait_for_mails(&self, count: usize) -> Vec<ReceivedMail> {
        wait_for(&format!("{count} mail(s)"), Duration::from_secs(60), || async {
            let mails = self.mails();
            (mails.len() >= count).then_some(mails)
        })
        .await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One mail as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// How it arrived: `mode=starttls; auth=...; from=...; to=...`.
    pub session: String,
    pub subject: String,
    pub from: String,
    /// The sender's display name, decoded.
    pub from_name: String,
    pub to: Vec<String>,
    pub message_id: String,
    pub html: String,
    pub text: String,
    pub content_types: Vec<String>,
    /// Names of the top-level headers, as sent.
    pub header_names: Vec<String>,
}

impl ReceivedMail {
    pub fn parse(raw: &[u8]) -> Self {
        let message = mail_parser::MessageParser::default().parse(raw).expect("a parseable mail");
        let addresses = |a: Option<&mail_parser::Address>| -> Vec<String> {
            a.map(|a| a.iter().filter_map(|x| x.address().map(String::from)).collect()).unwrap_or_default()
        };
        Self {
            session: message.header_raw("X-Test-Session").unwrap_or_default().trim().to_string(),
            subject: message.subject().unwrap_or_default().to_string(),
            from: addresses(message.from()).join(","),
            from_name: message.from().and_then(|a| a.first()).and_then(|a| a.name()).unwrap_or_default().to_string(),
            to: addresses(message.to()),
            message_id: message.message_id().unwrap_or_default().to_string(),
            html: message.body_html(0).map(|b| b.into_owned()).unwrap_or_default(),
            text: message.body_text(0).map(|b| b.into_owned()).unwrap_or_default(),
            header_names: message.headers().iter().map(|h| h.name().to_string()).collect(),
            content_types: message
                .parts
                .iter()
                .filter_map(|p| p.content_type().map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))))
                .collect(),
        }
    }
}

/// A real S3-compatible server on loopback (moto in server mode), with one bucket.
pub struct S3Server {
    process: Child,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Server {
    pub async fn start() -> Self {
        let port = free_port();
        let process = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the tests need moto (pip install \"moto[server]\")");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let bucket = "pictures".to_string();
        let create = format!("{endpoint}/{bucket}");
        wait_for("the S3 server to create the bucket", Duration::from_secs(30), || async {
            http.put(&create).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        Self { process, endpoint, bucket }
    }

    /// Points `[cloudflare_r2]` at this server.
    pub fn configure(&self, config: &mut Config) {
        let r2 = &mut config.cloudflare_r2;
        r2.endpoint = self.endpoint.clone();
        r2.bucket = self.bucket.clone();
        r2.access_key_id = "test-access-key".into();
        r2.access_key_secret = Secret::new("test-secret-key");
        r2.public_url = "https://pics.example.com".into();
    }

    /// An object's bytes and content type, read back from the server (signed, as the
    /// bucket is private; the public domain is R2's business).
    pub async fn object(&self, key: &str) -> Option<(Vec<u8>, String)> {
        use object_store::ObjectStore;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("auto")
            .with_bucket_name(&self.bucket)
            .with_access_key_id("test-access-key")
            .with_secret_access_key("test-secret-key")
            .build()
            .unwrap();
        let object = store.get(&object_store::path::Path::from(key)).await.ok()?;
        let content_type = object.attributes.get(&object_store::Attribute::ContentType)?.to_string();
        Some((object.bytes().await.ok()?.to_vec(), content_type))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One scripted answer of a fake internet API.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl FakeResponse {
    pub fn ok(body: serde_json::Value) -> Self {
        Self { status: 200, headers: vec![], body }
    }

    /// An error in the shape OpenAI-style APIs use.
    pub fn error(status: u16, message: &str) -> Self {
        Self { status, headers: vec![], body: serde_json::json!({"error": {"message": message, "code": status}}) }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// OpenRouter's answer carrying `image` as a base64 `data:` URL.
pub fn openrouter_image(image: &[u8]) -> serde_json::Value {
    use base64::Engine;
    let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(image));
    openrouter_image_url(&url)
}

/// OpenRouter's answer carrying a link to the picture.
pub fn openrouter_image_url(url: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "gen-test",
        "object": "chat.completion",
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Here is your image.", "images": [{"type": "image_url", "image_url": {"url": url}}]}
        }]
    })
}

/// A chat answer with text only (a translation, or a model that did not draw).
pub fn chat_text(text: &str) -> serde_json::Value {
    serde_json::json!({"id": "chat-test", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]})
}

/// A small PNG.
pub fn tiny_png() -> Vec<u8> {
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(64, 48, image::Rgb([200, 120, 40]))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    png.into_inner()
}

/// Stand-ins for the internet APIs (OpenRouter, OpenAI-compatible images, ModelScope) on
/// loopback, speaking their wire format. Each POST path answers its script in order and
/// repeats the last answer; `GET /files/<name>` serves registered bytes.
pub struct FakeApi {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    state: Arc<FakeState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct FakeState {
    scripts: Mutex<HashMap<String, Vec<FakeResponse>>>,
    calls: Mutex<Vec<FakeRequest>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    delay: Mutex<Duration>,
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
}

pub const OPENROUTER_PATH: &str = "/api/v1/chat/completions";
pub const OPENAI_PATH: &str = "/v1/images/generations";
pub const MODELSCOPE_PATH: &str = "/modelscope/v1/chat/completions";

impl FakeApi {
    pub async fn start() -> Self {
        use std::sync::atomic::Ordering;
        let state: Arc<FakeState> = Arc::default();
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let state = shared.clone();
            async move {
                use axum::response::IntoResponse;
                let path = request.uri().path().to_string();
                if let Some(name) = path.strip_prefix("/files/") {
                    let file = state.files.lock().unwrap().get(name).cloned();
                    return match file {
                        Some(bytes) => ([("content-type", "image/png")], bytes).into_response(),
                        None => axum::http::StatusCode::NOT_FOUND.into_response(),
                    };
                }
                let headers = request
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let body = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
                let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                state.max_in_flight.fetch_max(now, Ordering::SeqCst);
                state.calls.lock().unwrap().push(FakeRequest {
                    path: path.clone(),
                    headers,
                    body: serde_json::from_slice(&body).unwrap_or_default(),
                });
                let delay = *state.delay.lock().unwrap();
                tokio::time::sleep(delay).await;
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                let answer = {
                    let mut scripts = state.scripts.lock().unwrap();
                    match scripts.get_mut(&path) {
                        Some(script) if script.len() > 1 => Some(script.remove(0)),
                        Some(script) => script.first().cloned(),
                        None => None,
                    }
                };
                let Some(answer) = answer else { return axum::http::StatusCode::NOT_FOUND.into_response() };
                let mut response =
                    (axum::http::StatusCode::from_u16(answer.status).unwrap(), axum::Json(answer.body)).into_response();
                for (name, value) in answer.headers {
                    response
                        .headers_mut()
                        .insert(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { address, state, task }
    }

    /// Scripts the answers of one POST path.
    pub fn respond(&self, path: &str, answers: Vec<FakeResponse>) {
        self.state.scripts.lock().unwrap().insert(path.into(), answers);
    }

    pub fn serve_file(&self, name: &str, bytes: Vec<u8>) -> String {
        self.state.files.lock().unwrap().insert(name.into(), bytes);
        format!("{}/files/{name}", self.address)
    }

    /// Every answer waits this long first (a slow model).
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    pub fn calls(&self, path: &str) -> Vec<FakeRequest> {
        self.state.calls.lock().unwrap().iter().filter(|c| c.path == path).cloned().collect()
    }

    /// The most calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Points the configuration's providers at this server.
    pub fn configure(&self, config: &mut Config) {
        config.api_keys.openrouter_api_key = Secret::new("sk-or-test-key");
        config.openrouter.base_url = format!("{}/api/v1", self.address);
        config.api_keys.openai_api_key = Secret::new("sk-openai-test-key");
        config.openai.base_url = format!("{}/v1", self.address);
        config.api_keys.model_scope_token = Secret::new("ms-test-token");
        config.translation.base_url = format!("{}/modelscope/v1", self.address);
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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
        config.nats.url = nats_server.url.clone();
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
            nats: connect_as(&nats_server.url, "admin").await.unwrap(),
            smtp,
            config,
            services: HashMap::new(),
            _dir: dir,
            nats_server,
        };
        let ingest_config = logged_in_as(&app.config, "ingest");
        app.track("ingest", move |stop| huiying::ingest::serve(listener, ingest_config, stop));
        for service in ["generator", "store", "mailer"] {
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
        // Each service as its own NATS user, as `huiying up` runs them.
        let config = logged_in_as(&self.config, name);
        match name {
            "generator" => self.track(name, move |stop| huiying::generator::run(config, stop)),
            "store" => self.track(name, move |stop| huiying::store::run(config, stop)),
            "mailer" => self.track(name, move |stop| huiying::mailer::run(config, stop)),
            other => panic!("no service {other}"),
        }
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

    /// Waits until the job is completed or failed, and returns its state.
    pub async fn wait_for_job(&self, id: &str) -> serde_json::Value {
        wait_for(&format!("job {id} to finish"), Duration::from_secs(60), || async {
            let state: serde_json::Value = self.get_job(id).await.json().await.ok()?;
            matches!(state["status"].as_str(), Some("completed" | "failed")).then_some(state)
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

    /// Starts a service's real binary (`mailer`, `store`) with the test's configuration,
    /// logged in to NATS as that service, with `env` added.
    pub fn spawn_process(&self, service: &str, env: &[(&str, &str)]) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_huiying"));
        command
            .arg("--config")
            .arg(self.config_file())
            .arg(service)
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

    /// The picture files in the images folder.
    pub fn image_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.config.server.images_dir) else { return Vec::new() };
        let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
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
