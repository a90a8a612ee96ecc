//! Mail that reaches the inbox: signed for the sender's domain (checked by dkimpy, a
//! verifier that is not ours), ...

use std::path::{Path, PathBuf};
use std::process::Command;

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
fn public_record(key: &PathBuf, kind: &str) -> String {
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
