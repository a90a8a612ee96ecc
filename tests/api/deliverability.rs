//! Mail that reaches the inbox: signed for the sender's domain (checked by dkimpy, a
//! verifier that is not ours), with a one-click unsubscribe that holds.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use huiying::config::DkimSettings;

use crate::helpers::{REPO, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_signed_with_rsa_and_ed25519_verifies_elsewhere_and_a_changed_header_breaks_both() {
    // An RSA key as openssl writes it, and an Ed25519 key from `huiying mail dkim-keygen`.
    let keys = tempfile::tempdir().unwrap();
    let rsa = keys.path().join("rsa.pem");
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path(&rsa)]);
    let ed25519 = keys.path().join("ed25519.pem");
    let keygen = Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(["mail", "dkim-keygen", "--algorithm", "ed25519", "--out", path(&ed25519)])
        .env_remove("HUIYING_CONFIG")
        .current_dir(keys.path())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&keygen.stdout).to_string();
    assert!(keygen.status.success(), "{printed} {}", String::from_utf8_lossy(&keygen.stderr));
    // The record it prints is the one openssl derives from the key.
    let records = json!({
        "rsa._domainkey.example.com": public_record(&rsa, "rsa"),
        "ed._domainkey.example.com": public_record(&ed25519, "ed25519"),
    });
    assert!(printed.contains(records["ed._domainkey.example.com"].as_str().unwrap()), "{printed}");

    let app = TestApp::spawn_with(|config, _| {
        config.smtp.dkim = DkimSettings {
            domain: "example.com".into(),
            selector: vec!["rsa".into(), "ed".into()],
            private_key_file: vec![path(&rsa).into(), path(&ed25519).into()],
        };
    })
    .await;
    app.post_generate(json!({"prompt": "签名的邮件 a signed mail"})).await;
    app.smtp.wait_for_mails(1).await;
    let mail = app.smtp.raw_mails().remove(0);

    assert_eq!(verify(&mail, &records), ["rsa pass", "ed pass"]);
    let mut lines = mail.split("\r\n").skip_while(|line| !line.starts_with("DKIM-Signature"));
    let first = lines.next().expect("a DKIM-Signature");
    let signature: String =
        std::iter::once(first).chain(lines.take_while(|line| line.starts_with([' ', '\t']))).collect();
    for header in ["from", "to", "subject", "date", "message-id", "mime-version", "content-type", "list-unsubscribe"] {
        assert!(signature.contains(header), "{header} is signed: {signature}");
    }
    let changed = mail.replacen("\r\nSubject: ", "\r\nSubject: Re: ", 1);
    assert_ne!(changed, mail);
    assert_eq!(verify(&changed, &records), ["rsa fail", "ed fail"]);
    let changed = mail.replacen("\r\nList-Unsubscribe: <", "\r\nList-Unsubscribe: <https://elsewhere.example/", 1);
    assert_ne!(changed, mail);
    assert_eq!(verify(&changed, &records), ["rsa fail", "ed fail"]);
}

/// What dkimpy says of each signature of `mail`, with `records` as DNS.
fn verify(mail: &str, records: &serde_json::Value) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mail.eml"), mail).unwrap();
    std::fs::write(dir.path().join("dns.json"), records.to_string()).unwrap();
    let output = Command::new("python3")
        .arg(Path::new(REPO).join("tests/support/dkim_verify.py"))
        .args([dir.path().join("mail.eml"), dir.path().join("dns.json")])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(String::from).collect()
}

/// The DKIM record of a private key, as openssl derives its public key.
fn public_record(key: &Path, kind: &str) -> String {
    let der = openssl(&["pkey", "-in", path(key), "-pubout", "-outform", "DER"]);
    // Ed25519's record holds the bare 32-byte key, RSA's the whole SubjectPublicKeyInfo.
    let public = if kind == "ed25519" { &der[der.len() - 32..] } else { &der[..] };
    use base64::Engine;
    format!("v=DKIM1; k={kind}; p={}", base64::engine::general_purpose::STANDARD.encode(public))
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl").args(args).output().expect("the tests need openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_click_unsubscribe_stops_the_next_mail_while_a_get_or_a_forged_link_changes_nothing() {
    let app = TestApp::spawn().await;
    let first = app.submit(json!({"prompt": "the first picture"})).await;
    app.wait_for_job(&first).await;
    app.smtp.wait_for_mails(1).await;
    let mail = app.smtp.raw_mails().remove(0);
    assert!(mail.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"), "{mail}");
    let link = header(&mail, "List-Unsubscribe").trim_start_matches('<').split('>').next().unwrap().to_string();
    assert!(link.starts_with(&format!("{}/unsubscribe/", app.address)), "{link}");

    // A mail scanner follows the link: a page with a button, and nothing changes.
    let page = app.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<form method=\"post\"") && page.contains("user@example.com"), "{page}");
    // A link for somebody else, made without the key, is refused.
    let (_, tag) = link.rsplit_once('.').unwrap();
    let forged = format!("{}/unsubscribe/{}.{tag}", app.address, base64_url("victim@example.com"));
    assert_eq!(app.http.post(&forged).send().await.unwrap().status(), 403);
    let second = app.submit(json!({"prompt": "the second picture"})).await;
    app.wait_for_job(&second).await;
    app.smtp.wait_for_mails(2).await;

    // The reader clicks "unsubscribe": the mail program POSTs, with no key.
    let clicked = app
        .http
        .post(&link)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(clicked.status(), 200);
    let third = app.submit(json!({"prompt": "the third picture"})).await;
    app.wait_for_job(&third).await;
    let outcome = mail_outcome(&app, &third).await;
    assert_eq!(outcome["state"], "suppressed", "{outcome}");
    assert_eq!(app.smtp.mails().len(), 2, "no mail after unsubscribing");

    // The admin sees why, and undoes it: the next job mails again.
    let listed = String::from_utf8_lossy(&app.huiying(&["mail", "suppressed"], &[]).stdout).to_string();
    assert!(listed.contains("user@example.com") && listed.contains("unsubscribed"), "{listed}");
    let undone = app.huiying(&["mail", "unsuppress", "user@example.com"], &[]);
    assert!(String::from_utf8_lossy(&undone.stdout).contains("notifications go there again"));
    app.submit(json!({"prompt": "the fourth picture"})).await;
    app.smtp.wait_for_mails(3).await;
}

/// A header's value, unfolded.
fn header(mail: &str, name: &str) -> String {
    let mut lines = mail.split("\r\n").skip_while(|line| !line.starts_with(&format!("{name}:")));
    let first = lines.next().unwrap_or_else(|| panic!("no {name} header in {mail}"));
    let rest = lines.take_while(|line| line.starts_with([' ', '\t'])).map(str::trim_start);
    std::iter::once(first[name.len() + 1..].trim()).chain(rest).collect::<Vec<_>>().join(" ")
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recipient_refused_for_good_gets_no_more_mail_and_the_admin_sees_why() {
    let app = TestApp::spawn_with(|config, _| config.smtp.to = vec!["reject@example.com".into()]).await;
    let first = app.submit(json!({"prompt": "to nobody"})).await;
    app.wait_for_job(&first).await;
    assert_eq!(mail_outcome(&app, &first).await["state"], "failed");

    let second = app.submit(json!({"prompt": "to nobody again"})).await;
    app.wait_for_job(&second).await;
    let outcome = mail_outcome(&app, &second).await;
    assert_eq!(outcome["state"], "suppressed", "{outcome}");
    assert!(app.smtp.mails().is_empty());
    let listed = String::from_utf8_lossy(&app.huiying(&["mail", "suppressed"], &[]).stdout).to_string();
    assert!(listed.contains("reject@example.com") && listed.contains("bounced"), "{listed}");
    assert!(listed.contains("5.1.1") && listed.contains(&first), "the reply and the job: {listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn too_fast_replies_space_the_mails_out_and_every_mail_still_arrives_once() {
    let app = TestApp::spawn_with(|config, _| {
        config.smtp.to = vec!["toofast@example.com".into()];
        config.smtp.retry_delay = Duration::from_secs(1);
    })
    .await;
    let jobs = [app.submit(json!({"prompt": "one"})).await, app.submit(json!({"prompt": "two"})).await];
    let third = app.submit(json!({"prompt": "three"})).await;
    for job in jobs.iter().chain([&third]) {
        app.wait_for_job(job).await;
    }
    app.smtp.wait_for_mails(3).await;
    app.wait_until_consumer_idle("mailer").await;

    let mut ids: Vec<String> = app.smtp.mails().into_iter().map(|mail| mail.message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), app.smtp.mails().len()), (3, 3), "each mail once");
    // After "too fast" and 451 the mails came spaced out, not at the retry delay's pace.
    let arrived = app.smtp.arrival_times();
    for pair in arrived.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(1500), "mails {:?} apart", pair[1] - pair[0]);
    }
}

/// The job's mail outcome, once the mailer logged one.
async fn mail_outcome(app: &TestApp, job: &str) -> serde_json::Value {
    crate::helpers::wait_for("the job's mail outcome", Duration::from_secs(20), || async {
        let answer: serde_json::Value =
            app.http.get(format!("{}/jobs/{job}/notifications", app.address)).send().await.ok()?.json().await.ok()?;
        answer["mails"].as_array()?.first().cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_doctor_names_each_missing_record_with_what_to_publish_and_is_green_once_all_are_there() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dkim.pem");
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path(&key)]);
    let dkim_record = public_record(&key, "rsa");
    let dns = DnsServer::start(&dir);
    let doctor = || {
        let output = Command::new(env!("CARGO_BIN_EXE_huiying"))
            .args(["mail", "doctor"])
            .env_remove("HUIYING_CONFIG")
            .current_dir(dir.path())
            .envs([
                ("SMTP_FROM", "绘影 <huiying@example.com>"),
                ("SMTP_LANGUAGE", "en"),
                ("SMTP_DNS_SERVER", dns.address.as_str()),
                ("SMTP_DKIM_DOMAIN", "example.com"),
                ("SMTP_DKIM_PRIVATE_KEY_FILE", path(&key)),
            ])
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).to_string())
    };

    // Nothing published: each record is named, with the one to publish.
    dns.serve(json!({}));
    let (healthy, said) = doctor();
    assert!(!healthy, "{said}");
    assert!(said.contains("MISSING SPF example.com") && said.contains("\"v=spf1 "), "{said}");
    assert!(said.contains("MISSING DKIM huiying._domainkey.example.com"), "{said}");
    assert!(
        said.contains(&format!("publish the TXT record \"{dkim_record}\" at huiying._domainkey.example.com")),
        "{said}"
    );
    assert!(said.contains("MISSING DMARC _dmarc.example.com") && said.contains("\"v=DMARC1; p=none"), "{said}");

    // Everything there (the DKIM key longer than one DNS string): all green.
    let mut zone = json!({
        "example.com": ["google-site-verification=abc", "v=spf1 ip4:192.0.2.7 ~all"],
        "huiying._domainkey.example.com": [dkim_record],
        "_dmarc.example.com": ["v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com"],
    });
    dns.serve(zone.clone());
    let (healthy, said) = doctor();
    assert!(healthy, "{said}");
    assert_eq!(said.lines().filter(|line| line.starts_with("ok ")).count(), 3, "{said}");
    assert!(said.contains("matches the configured key"), "{said}");

    // A key published for another private key: named, with the right record.
    let other = dir.path().join("other.pem");
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path(&other)]);
    zone["huiying._domainkey.example.com"] = json!([public_record(&other, "rsa")]);
    dns.serve(zone);
    let (healthy, said) = doctor();
    assert!(!healthy);
    assert!(said.contains("is not the one in") && said.contains(&dkim_record), "{said}");
}

/// dnslib's DNS server on loopback, answering TXT questions from a zone the test sets.
struct DnsServer {
    address: String,
    zone: std::path::PathBuf,
    process: std::process::Child,
}

impl DnsServer {
    fn start(dir: &tempfile::TempDir) -> Self {
        // dnslib answers on UDP and TCP: a port free for both (a free UDP port is often
        // some other test's TCP connection).
        let port = loop {
            let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = tcp.local_addr().unwrap().port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let zone = dir.path().join("zone.json");
        std::fs::write(&zone, "{}").unwrap();
        let mut process = Command::new("python3")
            .arg(Path::new(REPO).join("tests/support/dns_server.py"))
            .arg(port.to_string())
            .arg(&zone)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(process.stdout.take().unwrap()), &mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "the DNS server did not start");
        Self { address: format!("127.0.0.1:{port}"), zone, process }
    }

    /// Answers from `zone` from now on: names to lists of TXT values.
    fn serve(&self, zone: serde_json::Value) {
        std::fs::write(&self.zone, zone.to_string()).unwrap();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_private_pictures_the_mails_link_is_signed_and_opens_while_a_changed_one_is_refused() {
    let app = TestApp::spawn_with(|config, _| config.server.public_pictures = false).await;
    let job = app.submit(json!({"prompt": "a private picture"})).await;
    app.wait_for_job(&job).await;
    let mail = app.smtp.wait_for_mails(1).await.remove(0);
    let link = mail
        .text
        .split_whitespace()
        .filter_map(|word| word.find("http").map(|start| &word[start..]))
        .find(|url| url.contains("/static/images/") && url.contains("?exp="))
        .unwrap_or_else(|| panic!("no signed picture link in {}", mail.text))
        .to_string();
    assert!(link.contains("&sig="), "{link}");

    let opened = app.http.get(&link).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    assert!(opened.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]), "the JPEG itself");
    let changed = link.replacen("&sig=", "&sig=A", 1);
    assert_eq!(app.http.get(&changed).send().await.unwrap().status(), 403);
}
