//! Mailer benchmark: how long composing one mail takes (templates + MIME), and how many
//! mails a second reach a local SMTP sink over one pooled connection and over several.
//!
//!     cargo bench --bench mailer
//!
//! The send part needs postfix's `smtp-sink` (Debian package `postfix`); without it, only
//! composing is measured. `smtp-source` from the same package, when present, gives the
//! sink's own ceiling for comparison.

use huiying::contract::values::{JobId, ModelName, Prompt};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use huiying::config::DkimSettings;
use huiying::config::{SmtpConfig, TlsMode};
use huiying::contract::events::ImageCompleted;
use huiying::mailer::{Composer, Notice};
use huiying::smtp::Transport;
use huiying::smtp::dkim::{DkimKey, KeyKind, Signer};

fn config(port: u16) -> SmtpConfig {
    SmtpConfig {
        enable: true,
        host: "127.0.0.1".into(),
        port,
        from: "绘影 <bench@example.com>".into(),
        to: vec!["user@example.com".into()],
        tls: TlsMode::None,
        templates_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/templates").into(),
        ..SmtpConfig::default()
    }
}

fn notice(n: usize) -> Notice {
    let now = time::OffsetDateTime::now_utc();
    Notice::completed(
        &ImageCompleted {
            cost: Default::default(),
            owner: None,
            group: None,
            version: 1,
            id: JobId::parse(format!("00000000-0000-4000-8000-{n:012}")).unwrap(),
            prompt: Prompt::parse(format!("一只在月球上的猫 <{n}> & a lighthouse at dawn, watercolor")).unwrap(),
            english_prompt: format!("a cat on the moon {n}"),
            model: ModelName::parse("google/gemini-2.5-flash-image-preview:free").unwrap(),
            url: format!("https://img.example.com/static/images/huiying_image_{n}.jpg"),
            local_url: format!("https://img.example.com/static/images/huiying_image_{n}.jpg"),
            r2_url: None,
            filename: format!("huiying_image_{n}.jpg"),
            width: 1024,
            height: 1024,
            format: "jpeg".into(),
            file_size: 234_567,
            labels: Default::default(),
            kind: Default::default(),
            inputs: Vec::new(),
            requested_at: now,
            completed_at: now,
            duration_ms: 12_345,
            notify_email: None,
            callback: Default::default(),
            ignored_options: Vec::new(),
            fallback: None,
        },
        &jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
    )
}

fn main() {
    let composer = Arc::new(Composer::from_config(&config(25)).expect("templates load"));
    let notices: Vec<Notice> = (0..1000).map(notice).collect();

    // Warm up, then measure composing (render three templates + build the MIME message).
    for n in &notices {
        composer.compose(n, None).unwrap();
    }
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        for n in &notices {
            std::hint::black_box(composer.compose(n, None).unwrap().formatted());
        }
    }
    let per_mail = start.elapsed() / (rounds * notices.len()) as u32;
    println!(
        "compose (render subject+html+text, build and format MIME): {:.1} µs per mail",
        per_mail.as_secs_f64() * 1e6
    );

    dkim_cost(&composer, &notices);

    let Ok(_) = Command::new("smtp-sink").arg("-h").stderr(Stdio::null()).stdout(Stdio::null()).status() else {
        println!("smtp-sink not found (apt-get install postfix): send rate not measured");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut sink = Command::new("smtp-sink")
        // smtp-sink refuses to run as root without a user to switch to.
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let total = 4000;
    for connections in [1usize, 4, 8] {
        let rate = runtime.block_on(send_rate(port, composer.clone(), total, connections));
        println!("send to smtp-sink, {connections} connection(s): {rate:.0} mails/s ({total} mails)");
    }
    if Command::new("smtp-source").arg("-h").stderr(Stdio::null()).status().is_ok() {
        for sessions in [1, 8] {
            let start = Instant::now();
            let status = Command::new("smtp-source")
                .args(["-s", &sessions.to_string(), "-m", &total.to_string(), "-l", "6000"])
                .arg(format!("127.0.0.1:{port}"))
                .status()
                .unwrap();
            assert!(status.success());
            println!(
                "baseline smtp-source, {sessions} session(s): {:.0} mails/s",
                total as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    let _ = sink.kill();
    let _ = sink.wait();
}

async fn send_rate(port: u16, composer: Arc<Composer>, total: usize, connections: usize) -> f64 {
    let smtp = Arc::new(config(port));
    let transport = Transport::from_config(&smtp).unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let (transport, composer, smtp) = (transport.clone(), composer.clone(), smtp.clone());
        tasks.push(tokio::spawn(async move {
            for n in (worker..total).step_by(connections) {
                let message = composer.compose(&notice(n), None).unwrap();
                transport.send(message, &smtp).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// What a DKIM signature adds to each mail (lettre signs, RSA-2048 and Ed25519), beside
/// dkimpy signing the same mail with the same key (what a Python sender would use).
fn dkim_cost(composer: &Composer, notices: &[Notice]) {
    let mails: Vec<lettre::Message> = notices.iter().take(200).map(|n| composer.compose(n, None).unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    for kind in [KeyKind::Rsa, KeyKind::Ed25519] {
        let file = dir.path().join(format!("{kind:?}.pem"));
        std::fs::write(&file, DkimKey::generate(kind).unwrap().to_pem().unwrap()).unwrap();
        let settings = DkimSettings {
            domain: "example.com".into(),
            selector: vec!["bench".into()],
            private_key_file: vec![file.display().to_string()],
        };
        let signer = Signer::from_config(&settings).unwrap().unwrap();
        let start = Instant::now();
        for mail in &mails {
            std::hint::black_box(signer.sign(mail));
        }
        let ours = start.elapsed().as_secs_f64() * 1e6 / mails.len() as f64;
        let unsigned = dir.path().join("mail.eml");
        std::fs::write(&unsigned, mails[0].formatted()).unwrap();
        let python = format!(
            "import dkim,time\nm=open({:?},'rb').read()\nk=open({:?},'rb').read()\nt=time.perf_counter()\n\
             for _ in range(200): dkim.sign(m,b'bench',b'example.com',k,include_headers=[b'from',b'to',b'subject',b'date',b'message-id',b'mime-version',b'content-type'],canonicalize=(b'relaxed',b'relaxed'),signature_algorithm=b'{}-sha256')\n\
             print((time.perf_counter()-t)/200*1e6)",
            unsigned.display().to_string(),
            file.display().to_string(),
            if kind == KeyKind::Rsa { "rsa" } else { "ed25519" },
        );
        let theirs = Command::new("python3").args(["-c", &python]).output().ok().filter(|o| o.status.success());
        let theirs =
            theirs.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_else(|| "n/a".into());
        println!("DKIM {kind:?} signature: {ours:.0} µs per mail (dkimpy, same mail and key: {theirs} µs)");
    }
}
