//! A real SMTP server (aiosmtpd) with STARTTLS, implicit TLS and AUTH, and its certificates.

use mail_parser::MimeHeaders;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use super::*;

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
        // A port chosen free may be taken by another test before the server binds it:
        // then the server exits at once, and a new set of ports is tried.
        for _ in 0..3 {
            let mut server = Self::stopped();
            server.spawn();
            if server.listening().await {
                return server;
            }
        }
        panic!("the SMTP server exited at start three times (its error is above)");
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
        self.spawn();
        assert!(self.listening().await, "the SMTP server exited at restart (its error is above)");
    }

    fn spawn(&mut self) {
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
    }

    /// Waits until every port accepts; false when the server exited first.
    async fn listening(&mut self) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for port in [self.starttls_port, self.tls_port, self.plain_port] {
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                if self.process.as_mut().is_some_and(|process| matches!(process.try_wait(), Ok(Some(_)))) {
                    return false;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "timed out after 60s waiting for the SMTP server to listen"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        true
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

    /// When each accepted mail arrived, in order (the server names its files by time).
    pub fn arrival_times(&self) -> Vec<Duration> {
        let mut nanos: Vec<u64> = std::fs::read_dir(self.maildir.path())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.split('-').next()?.parse().ok())
            .collect();
        nanos.sort();
        nanos.into_iter().map(Duration::from_nanos).collect()
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
    /// The pictures inside the mail, decoded.
    pub images: Vec<Vec<u8>>,
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
            images: message
                .parts
                .iter()
                .filter(|p| p.content_type().is_some_and(|c| c.ctype() == "image"))
                .map(|p| p.contents().to_vec())
                .collect(),
            content_types: message
                .parts
                .iter()
                .filter_map(|p| p.content_type().map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))))
                .collect(),
        }
    }
}
