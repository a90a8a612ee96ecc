//! `huiying up`: the one command that runs everything.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{REPO, free_port, nats_server_program, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn huiying_up_starts_its_own_nats_and_a_request_ends_as_a_picture_and_a_mail_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(REPO).join("nats.conf"), dir.path().join("nats.conf")).unwrap();
    let templates = Path::new(REPO).join("templates").display().to_string();
    let env = [("SMTP_TEMPLATES_DIR", &*templates), ("SMTP_OUTBOX_DIR", "outbox")];
    let mut up = Up::start(dir.path(), Path::new(env!("CARGO_BIN_EXE_huiying")), &env);
    // The banner says where to send requests and where the mail goes.
    let (banner, http_port, nats_port) = (up.banner.clone(), up.http_port, up.nats_port);
    assert!(banner.contains(&format!("http://localhost:{http_port}/")), "{banner}");
    assert!(banner.contains("started by huiying: nats-server 2.1"), "{banner}");
    assert!(banner.contains("SMTP disabled") && banner.contains("outbox"), "{banner}");
    assert!(banner.contains("offline placeholder"), "{banner}");

    let http = reqwest::Client::new();
    let url = up.until_healthy().await;
    let response = http
        .post(format!("{url}/generate-image"))
        .json(&serde_json::json!({"prompt": "测试绘影邮件通知功能"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let image_url = body["data"][0]["url"].as_str().unwrap();
    assert!(image_url.starts_with(&format!("http://localhost:{http_port}/static/images/huiying_image_")));
    let mail = first_outbox_mail(dir.path()).await;
    assert!(mail.html.contains("测试绘影邮件通知功能") && mail.html.contains(image_url));
    assert!(dir.path().join("huiying.db").is_file());
    assert!(dir.path().join(".huiying/nats/jetstream").is_dir(), "JetStream data where nats.conf says");

    // Each service has its own NATS login; the admin's is left for the operator, readable
    // by the owner only, and nobody gets in without one.
    assert!(banner.contains("one login per service"), "{banner}");
    let env_file = dir.path().join(".huiying/nats.env");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&env_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let env = std::fs::read_to_string(&env_file).unwrap();
    let password = env.lines().find_map(|l| l.strip_prefix("NATS_PASSWORD=")).unwrap();
    assert!(password.len() >= 32, "a long random password");
    assert!(!banner.contains(password), "the banner never shows it");
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    assert!(async_nats::connect(&nats_url).await.is_err(), "no login: refused");
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), password.into())
        .connect(&nats_url)
        .await
        .unwrap();
    drop(admin);

    // SIGTERM stops everything, including the nats-server it started.
    Command::new("kill").args(["-TERM", &up.process.id().to_string()]).status().unwrap();
    let status = up.process.wait().unwrap();
    assert!(status.success(), "{status}");
    // The nats-server it started is gone too: no process is left in the folder.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            (cwd == dir.path()).then(|| std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default())
        })
        .collect();
    assert!(left.is_empty(), "still running in the folder: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_copied_to_an_empty_folder_runs_a_job_end_to_end_with_mail_and_logins() {
    // No nats.conf, no templates/: what the binary carries is enough.
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("huiying");
    std::fs::copy(env!("CARGO_BIN_EXE_huiying"), &binary).unwrap();
    let mut up = Up::start(dir.path(), &binary, &[("SMTP_OUTBOX_DIR", "outbox")]);
    assert!(up.banner.contains("using the built-in one"), "{}", up.banner);
    assert!(up.banner.contains("one login per service"), "{}", up.banner);

    let url = up.until_healthy().await;
    let response = reqwest::Client::new()
        .post(format!("{url}/generate-image"))
        .json(&serde_json::json!({"prompt": "搬家"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mail = first_outbox_mail(dir.path()).await;
    assert!(mail.html.contains("搬家"), "the built-in Chinese templates: {}", mail.subject);
    assert!(dir.path().join(".huiying/nats.conf").is_file());
    assert!(async_nats::connect(format!("nats://127.0.0.1:{}", up.nats_port)).await.is_err(), "no login: refused");

    Command::new("kill").args(["-TERM", &up.process.id().to_string()]).status().unwrap();
    assert!(up.process.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn huiying_up_shows_its_banner_once_every_service_answers_without_the_nats_clients_chatter() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), Path::new(env!("CARGO_BIN_EXE_huiying")), &[("RUST_LOG", "")]);
    assert!(up.banner.contains("\nhuiying is up.\n"), "{}", up.banner);
    // The banner came once everything answers: the first look finds every service up.
    let health: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{}/health", up.http_port)).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    // At the default level, the first screen holds what matters: each service ready, and
    // no connection lines of the NATS client.
    let log = std::fs::read_to_string(up.log.path()).unwrap();
    for chatter in ["connected successfully", "event: connected", "event: closed"] {
        assert!(!log.contains(chatter), "{chatter:?} in:\n{log}");
    }
    assert!(log.contains("ingest ready"), "{log}");
    Command::new("kill").args(["-TERM", &up.process.id().to_string()]).status().unwrap();
    assert!(up.process.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_mail_off_and_no_outbox_a_job_completes_and_no_mail_is_sent_or_written() {
    // The original's `enable = false`: no mail at all, not even a file.
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), Path::new(env!("CARGO_BIN_EXE_huiying")), &[("SMTP_ENABLE", "false")]);
    assert!(up.banner.contains("mail is off"), "{}", up.banner);
    let url = up.until_healthy().await;
    let response = reqwest::Client::new()
        .post(format!("{url}/generate-image"))
        .json(&serde_json::json!({"prompt": "不要邮件"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The mailer has seen the job's event (its consumer is idle) and wrote nothing.
    let env = std::fs::read_to_string(dir.path().join(".huiying/nats.env")).unwrap();
    let password = env.lines().find_map(|l| l.strip_prefix("NATS_PASSWORD=")).unwrap().to_string();
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), password)
        .connect(format!("nats://127.0.0.1:{}", up.nats_port))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(admin);
    wait_for("the mailer to take the job's event", Duration::from_secs(30), || {
        let js = js.clone();
        async move {
            let stream = js.get_stream(huiying::contract::STREAM).await.ok()?;
            let mut mailer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("mailer").await.ok()?;
            let info = mailer.info().await.ok()?;
            (info.delivered.stream_sequence > 0 && info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await;
    let written: Vec<_> = walk(dir.path()).into_iter().filter(|path| path.ends_with(".eml")).collect();
    assert!(written.is_empty(), "{written:?}");
    assert!(!dir.path().join("outbox").exists());
    Command::new("kill").args(["-TERM", &up.process.id().to_string()]).status().unwrap();
    assert!(up.process.wait().unwrap().success());
}

/// Every file below `dir`, as paths.
fn walk(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match path.is_dir() {
            true => files.extend(walk(&path)),
            false => files.push(path.display().to_string()),
        }
    }
    files
}

#[test]
fn a_cluster_node_gets_the_nats_conf_from_the_binary_itself() {
    let output = Command::new(env!("CARGO_BIN_EXE_huiying")).arg("nats-conf").output().unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed, std::fs::read_to_string(Path::new(REPO).join("nats.conf")).unwrap());
    assert!(printed.contains("# cluster {"), "with the cluster block to switch on");
}

#[test]
fn huiying_up_without_a_new_enough_nats_server_says_which_version_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("nats-server");
    std::fs::write(&old, "#!/bin/sh\necho 'nats-server: v2.9.10'\n").unwrap();
    Command::new("chmod").arg("+x").arg(&old).status().unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_huiying"))
        .arg("up")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", dir.path())
        .env("NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
        .env("SMTP_TEMPLATES_DIR", Path::new(REPO).join("templates"))
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs nats-server 2.10 or newer"), "{stderr}");
    assert!(stderr.contains("2.9.10"), "{stderr}");
    assert!(stderr.contains("scripts/install-nats-server.sh"), "{stderr}");
}

#[test]
fn huiying_load_runs_a_pipeline_of_its_own_and_reports_latency_and_memory() {
    let output = Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(["load", "--jobs", "20", "--rate", "40", "--keep"])
        .current_dir(REPO)
        .env_remove("HUIYING_CONFIG")
        .env("NATS_SERVER_BIN", nats_server_program())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("accepted 20 of 20 jobs"), "{report}");
    for stage in ["ingest (POST → 202)", "generator (requested → generated)", "store (generated → completed)"] {
        let line = report.lines().find(|l| l.contains(stage)).unwrap_or_else(|| panic!("no {stage} in {report}"));
        assert!(!line.contains("(none)"), "{line}");
    }
    let end_to_end = report.lines().find(|l| l.contains("end to end")).unwrap();
    assert!(!end_to_end.contains("(none)"), "every job was followed to its mail: {end_to_end}");
    for process in ["nats-server", "ingest", "generator", "store", "mailer"] {
        let line = report.lines().find(|l| l.trim_start().starts_with(process)).unwrap();
        let peak: f64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(peak > 1.0, "{process} memory measured: {line}");
    }
    // --keep leaves the run's folder, with each job's times: requested, generated,
    // completed, mailed, in milliseconds from the first request, in that order.
    let kept = report.lines().find_map(|l| l.trim().strip_prefix("kept ")).expect("the kept folder is named");
    let folder = Path::new(kept.split(" (").next().unwrap());
    let timelines = std::fs::read_to_string(folder.join("jobs.csv")).unwrap();
    let mut lines = timelines.lines();
    assert_eq!(lines.next(), Some("job,requested,generated,completed,mailed"));
    let jobs: Vec<&str> = lines.collect();
    assert_eq!(jobs.len(), 20, "{timelines}");
    for job in jobs {
        let times: Vec<f64> = job.split(',').skip(1).map(|t| t.parse().expect("every point has a time")).collect();
        assert!(times.is_sorted(), "a job passes its points in order: {job}");
    }
    std::fs::remove_dir_all(folder).unwrap();
}

/// `huiying up` (the binary `program`) started in `dir` on free ports, its banner read.
struct Up {
    process: std::process::Child,
    banner: String,
    http_port: u16,
    nats_port: u16,
    /// What it printed to stderr (warnings and errors): shown when it never answers.
    log: tempfile::NamedTempFile,
}

impl Up {
    /// Logs at warnings (`RUST_LOG=warn`) unless `env` sets `RUST_LOG`; an empty one means
    /// none at all: the configured level, as a user who sets nothing gets.
    fn start(dir: &Path, program: &Path, env: &[(&str, &str)]) -> Self {
        let (http_port, nats_port) = (free_port(), free_port());
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(program);
        command
            .arg("up")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("PORT", http_port.to_string())
            .env("NATS_URL", format!("nats://127.0.0.1:{nats_port}"))
            .env("NATS_SERVER_BIN", nats_server_program())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied());
        if env.contains(&("RUST_LOG", "")) {
            command.env_remove("RUST_LOG");
        }
        let mut process = command.stdout(Stdio::piped()).stderr(log.reopen().unwrap()).spawn().unwrap();
        let mut banner = String::new();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Try:") {
                break;
            }
        }
        // Keep reading: a closed pipe would fail its next line.
        std::thread::spawn(move || lines.for_each(drop));
        Self { process, banner, http_port, nats_port, log }
    }

    /// Its address, once `/health` answers (60 s: a loaded CI machine starts the
    /// nats-server and six services slowly); else its log says why.
    async fn until_healthy(&self) -> String {
        let (http, url) = (reqwest::Client::new(), format!("http://127.0.0.1:{}", self.http_port));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !http.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            assert!(std::time::Instant::now() < deadline, "huiying up did not answer within 60 s; it printed:\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        url
    }
}

/// The first mail `huiying up` wrote into `dir`'s outbox.
async fn first_outbox_mail(dir: &Path) -> crate::helpers::ReceivedMail {
    let outbox = dir.join("outbox");
    let raw = wait_for("the mail in the outbox", Duration::from_secs(30), || async {
        let entry = std::fs::read_dir(&outbox).ok()?.next()?.ok()?;
        let raw = std::fs::read(entry.path()).unwrap();
        // The file may still be being written: whole once the closing MIME boundary is in.
        String::from_utf8_lossy(&raw).trim_end().ends_with("--").then_some(raw)
    })
    .await;
    crate::helpers::ReceivedMail::parse(&raw)
}

#[test]
fn each_service_is_a_program_of_its_own_and_help_says_what_each_does() {
    let help = Command::new(env!("CARGO_BIN_EXE_huiying")).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for (service, says) in [
        ("ingest", "the HTTP API"),
        ("generator", "draws requested pictures"),
        ("store", "stores pictures"),
        ("mailer", "notification mails"),
        ("webhook", "signed webhook deliveries"),
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{service} ")))
            .unwrap_or_else(|| panic!("no {service} in:\n{help}"));
        assert!(line.contains(says), "{line}");
        let program = crate::helpers::service_program(service);
        let own = Command::new(program).arg("--help").output().unwrap();
        let own = String::from_utf8(own.stdout).unwrap();
        assert!(own.contains(says) && own.contains("--config"), "{program}: {own}");
    }
    // A mistake in the configuration is the same one line, exit code 2, as `huiying store`.
    let output = Command::new(crate::helpers::service_program("store"))
        .env("SMTP_PORT", "58x")
        .env_remove("HUIYING_CONFIG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("SMTP_PORT"), "{output:?}");
}
