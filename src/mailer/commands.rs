//! `huiying mail ...`: what a user runs to check the mail setup and to deal with
//! notifications that failed.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Composer, DeliveryState, Mailer, Notice, SentLog};
use crate::bus::Bus;
use crate::config::{Config, Language, TlsMode};
use crate::parts::JsonBucket;
use crate::smtp::dkim::{DkimKey, KeyKind};
use crate::smtp::{Delivery, Route, Transport};
use crate::suppression::Suppressions;

/// Sends a test mail with the current configuration. `Ok` says where it went; `Err`
/// says why it failed and what to do, never showing the password.
pub async fn test(config: &Config) -> anyhow::Result<String> {
    let smtp = &config.smtp;
    let composer = Composer::from_config(smtp)?;
    let transport = Transport::from_config(smtp)?;
    if transport.is_off() {
        anyhow::bail!(
            "mail is off: [smtp] enable = false and no [smtp] outbox_dir. Set enable = true (with host, from, to) to send mail"
        );
    }
    let message = composer.compose_test()?;
    let recipients = smtp.to.join(", ");
    transport
        .send(message, smtp)
        .await
        .and_then(Delivery::received)
        .map_err(|e| anyhow::anyhow!("the test mail was not sent: {e}"))?;
    Ok(match transport.route {
        Route::Off => unreachable!("refused above"),
        Route::Outbox { .. } => format!(
            "SMTP is disabled ([smtp] enable = false): the test mail was written to {}. Set enable = true to send real mail.",
            smtp.outbox_dir.display()
        ),
        Route::Smtp { .. } => {
            let tls = match smtp.effective_tls() {
                TlsMode::Tls => "implicit TLS",
                TlsMode::None => "no TLS",
                _ => "STARTTLS",
            };
            format!("test mail accepted by {}:{} ({tls}) for {recipients}", smtp.host, smtp.port)
        }
    })
}

/// Lines describing every notification that was given up (and those still retrying, or
/// whose log entry cannot be read).
pub async fn failed(config: &Config) -> anyhow::Result<Vec<String>> {
    let bus = Bus::connect(&config.nats, "huiying-mail", &CancellationToken::new()).await?;
    let log = SentLog::new(JsonBucket::new(Arc::new(bus.mail.clone())));
    let mut lines = Vec::new();
    for (key, entry) in log.all().await? {
        let entry = match entry {
            Ok(entry) if entry.state == DeliveryState::Sent => continue,
            Ok(entry) => entry,
            Err(error) => {
                lines.push(format!("{key}  unreadable: {error}"));
                continue;
            }
        };
        lines.push(format!(
            "{}  {:<9}  {:<8}  attempts {}  to {}  {}",
            entry.job_id,
            entry.kind,
            format!("{:?}", entry.state).to_lowercase(),
            entry.attempts,
            entry.recipients.join(","),
            entry.last_error.unwrap_or_default()
        ));
    }
    Ok(lines)
}

/// Sends the notifications of these jobs again (those not yet sent; all with `force`),
/// recording the outcome. Returns one line per job.
pub async fn resend(config: &Config, job_ids: &[String], force: bool) -> anyhow::Result<Vec<String>> {
    let bus = Bus::connect(&config.nats, "huiying-mail", &CancellationToken::new()).await?;
    let jobs = bus.job_board();
    let lists = super::MailLists::open(&bus, config, &CancellationToken::new()).await?;
    let mailer = Mailer::new(config, Arc::new(bus.mail.clone()), jobs.clone(), lists)?;
    let mut lines = Vec::new();
    for id in job_ids {
        let Some(status) = jobs.get(id).await? else {
            lines.push(format!("{id}: no such job"));
            continue;
        };
        let notice = match (&status.result, &status.error) {
            (Some(completed), _) => Notice::completed(completed, &config.smtp.reader_zone()),
            (None, Some(failed)) => Notice::failed(failed, &config.smtp.reader_zone()),
            _ => {
                lines.push(format!("{id}: still {:?}, nothing to notify yet", status.status));
                continue;
            }
        };
        let notice = mailer.addressed(notice).await.map_err(|failure| anyhow::anyhow!("{id}: {}", failure.reason))?;
        // An unreadable entry is treated as "not known to be sent": the user asked.
        let previous = mailer.log.get(id, notice.kind.name()).await.ok().flatten();
        if previous.as_ref().is_some_and(|p| p.state == DeliveryState::Sent) && !force {
            lines.push(format!("{id}: already sent (use --force to send again)"));
            continue;
        }
        let attempt = previous.map_or(1, |p| p.attempts + 1);
        let outcome = mailer.notify(&notice, attempt, false).await;
        lines.push(match outcome.state {
            DeliveryState::Sent => format!("{id}: sent to {}", outcome.recipients.join(", ")),
            _ => format!("{id}: failed again: {}", outcome.last_error.unwrap_or_default()),
        });
    }
    Ok(lines)
}

/// Writes a new DKIM key to `out` (never over an existing file) and returns the lines
/// that say which DNS record to publish and what to set.
pub fn dkim_keygen(config: &Config, kind: KeyKind, out: Option<PathBuf>) -> anyhow::Result<Vec<String>> {
    let dkim = &config.smtp.dkim;
    let out =
        out.or_else(|| dkim.private_key_file.first().map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("dkim.pem"));
    let selector = dkim.selector.first().map_or("huiying", |s| s.trim());
    let domain = match (dkim.domain.trim(), config.smtp.from.rsplit_once('@')) {
        ("", Some((_, domain))) => domain.trim_end_matches('>').trim().to_string(),
        ("", None) => "example.com".to_string(),
        (domain, _) => domain.to_string(),
    };
    let key = DkimKey::generate(kind)?;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&out).map_err(|e| {
            anyhow::anyhow!("cannot write {}: {e} (an existing key is never overwritten)", out.display())
        })?;
    std::io::Write::write_all(&mut file, key.to_pem()?.as_bytes())?;
    let record = key.dns_record()?;
    let zh = config.smtp.language == Language::ZhCn;
    let name = format!("{selector}._domainkey.{domain}");
    Ok(vec![
        if zh {
            format!("已写入私钥 {}（仅本机可读，切勿提交或外传）", out.display())
        } else {
            format!("wrote the private key to {} (readable by you only; never commit or share it)", out.display())
        },
        if zh {
            format!("在 DNS 中为 {name} 添加 TXT 记录：")
        } else {
            format!("publish this TXT record at {name}:")
        },
        format!("  {record}"),
        if zh {
            "超过 255 个字符时，DNS 服务商会自动拆分；BIND 区域文件中写作：".to_string()
        } else {
            "DNS providers split a value over 255 characters themselves; in a BIND zone file:".to_string()
        },
        format!("  {selector}._domainkey IN TXT ( {} )", zone_strings(&record)),
        if zh { "然后在 config.toml 中设置：".to_string() } else { "then set in config.toml:".to_string() },
        format!(
            "  [smtp.dkim]\n  domain = \"{domain}\"\n  selector = \"{selector}\"\n  private_key_file = \"{}\"",
            out.display()
        ),
    ])
}

/// A TXT value as the quoted strings of at most 255 characters a zone file takes.
fn zone_strings(value: &str) -> String {
    let pieces: Vec<String> =
        value.as_bytes().chunks(250).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
    pieces.join(" ")
}

/// Every address on the suppression list, a line each: why, since when, until when.
pub async fn suppressed(config: &Config) -> anyhow::Result<Vec<String>> {
    let list = suppression_list(config).await?;
    let lines: Vec<String> = list
        .all(time::OffsetDateTime::now_utc())
        .await?
        .into_iter()
        .map(|entry| {
            let until = entry.until.map_or("until unsuppressed".to_string(), |until| format!("until {until}"));
            let reason = format!("{:?}", entry.reason).to_lowercase();
            let job = entry.job_id.map(|job| format!("  job {job}")).unwrap_or_default();
            let reply = entry.reply.map(|reply| format!("  {reply}")).unwrap_or_default();
            format!("{}  {reason}  since {}  {until}{job}{reply}", entry.address, entry.at)
        })
        .collect();
    Ok(if lines.is_empty() { vec!["no address is suppressed".into()] } else { lines })
}

/// Takes `address` off the suppression list: notifications go there again.
pub async fn unsuppress(config: &Config, address: &str) -> anyhow::Result<Vec<String>> {
    let removed = suppression_list(config).await?.remove(address).await?;
    Ok(vec![match removed {
        true => format!("{address}: notifications go there again"),
        false => format!("{address} was not suppressed"),
    }])
}

async fn suppression_list(config: &Config) -> anyhow::Result<Suppressions> {
    let shutdown = CancellationToken::new();
    let bus = Bus::connect(&config.nats, "huiying-mail", &shutdown).await?;
    Ok(Suppressions::new(JsonBucket::new(Arc::new(bus.suppressed_bucket(&shutdown).await?))))
}
