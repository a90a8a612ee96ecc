//! Where mail goes (an SMTP server or the outbox folder), and what a failure means:
//! whether to retry, and what the user should do about it. The mailer sends
//! notifications through it; the webhook service, its operator alerts.

pub mod dkim;
pub mod pace;
mod sessions;
mod transaction;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use deadpool::managed::{Pool, PoolError};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
pub use sessions::SessionError;
use sessions::{Encryption, Sessions};
pub use transaction::{Delivery, Refusal};

use crate::config::{SmtpConfig, TlsMode};
use crate::failure::Failure;

/// How mail leaves: the way it goes, each message DKIM-signed first when `[smtp.dkim]`
/// is set (notifications, operator alerts and test mails alike).
#[derive(Clone)]
pub struct Transport {
    pub route: Route,
    signer: Option<Arc<dkim::Signer>>,
}

#[derive(Clone)]
pub enum Route {
    /// Authenticated SMTP sessions, reused ([`sessions`]), at the pace the server allows.
    Smtp { pool: Pool<Sessions>, pace: Arc<pace::Pace> },
    /// `.eml` files in a folder, the newest `keep` of them (0: all); `written` counts the
    /// mails since the folder was last pruned.
    Outbox { files: AsyncFileTransport<Tokio1Executor>, dir: PathBuf, keep: u32, written: Arc<AtomicU32> },
    /// `[smtp] enable = false` without an outbox: no mail at all.
    Off,
}

impl Transport {
    /// Checks the TLS files and the DKIM keys, so that a mistake stops the service at start.
    pub fn from_config(smtp: &SmtpConfig) -> anyhow::Result<Self> {
        let signer = dkim::Signer::from_config(&smtp.dkim)?.map(Arc::new);
        Ok(Self { route: Route::from_config(smtp)?, signer })
    }

    /// Whether mail is off altogether.
    pub fn is_off(&self) -> bool {
        matches!(self.route, Route::Off)
    }

    /// Sends a mail; `Ok` says who got it and who was refused for good.
    pub async fn send(&self, message: Message, smtp: &SmtpConfig) -> Result<Delivery, Failure> {
        let bytes = match &self.signer {
            Some(signer) => signer.sign(&message),
            None => message.formatted(),
        };
        self.route.send(message.envelope(), &bytes, smtp).await
    }

    /// Connects and logs in (TLS as configured) without sending anything: `huiying config
    /// check`. The outbox must be a folder; mail off needs nothing.
    pub async fn check(&self, smtp: &SmtpConfig) -> Result<(), Failure> {
        match &self.route {
            Route::Smtp { pool, .. } => session(pool, smtp).await.map(drop),
            Route::Outbox { dir, .. } if !dir.is_dir() => {
                Err(Failure::permanent(format!("the outbox {} is not a folder", dir.display())))
            }
            Route::Outbox { .. } | Route::Off => Ok(()),
        }
    }
}

impl Route {
    fn from_config(smtp: &SmtpConfig) -> anyhow::Result<Self> {
        if !smtp.enable && smtp.outbox_dir.as_os_str().is_empty() {
            return Ok(Route::Off);
        }
        if !smtp.enable {
            std::fs::create_dir_all(&smtp.outbox_dir).map_err(|e| {
                anyhow::anyhow!("bad configuration: smtp.outbox_dir {}: {e}", smtp.outbox_dir.display())
            })?;
            let files = AsyncFileTransport::new(&smtp.outbox_dir);
            let (dir, keep, written) = (smtp.outbox_dir.clone(), smtp.outbox_keep, Arc::default());
            return Ok(Route::Outbox { files, dir, keep, written });
        }
        let ca_pem = match smtp.ca_file.is_empty() {
            true => None,
            false => Some(
                std::fs::read(&smtp.ca_file)
                    .map_err(|e| anyhow::anyhow!("bad configuration: smtp.ca_file {}: {e}", smtp.ca_file))?,
            ),
        };
        let encryption = match smtp.effective_tls() {
            TlsMode::Tls => Encryption::Wrapper {
                config: sessions::tls_config(ca_pem.as_deref()).map_err(|e| {
                    anyhow::anyhow!("bad configuration: smtp.ca_file {} is no PEM certificate: {e}", smtp.ca_file)
                })?,
                server_name: rustls_pki_types::ServerName::try_from(smtp.host.clone())
                    .map_err(|e| anyhow::anyhow!("bad configuration: smtp.host {:?}: {e}", smtp.host))?,
            },
            // Required: never fall back to plain text when the server lacks STARTTLS.
            TlsMode::Starttls | TlsMode::Auto => {
                let mut parameters = TlsParameters::builder(smtp.host.clone());
                if let Some(pem) = &ca_pem {
                    let certificate = Certificate::from_pem(pem).map_err(|e| {
                        anyhow::anyhow!("bad configuration: smtp.ca_file {} is no PEM certificate: {e}", smtp.ca_file)
                    })?;
                    parameters = parameters.add_root_certificate(certificate);
                }
                Encryption::Starttls(parameters.build_rustls()?)
            }
            TlsMode::None => {
                tracing::warn!(host = %smtp.host, "[smtp] tls = \"none\": mail and password travel in plain text; use this only for a trusted relay on your own host or network");
                Encryption::None
            }
        };
        let sessions = Sessions {
            host: smtp.host.clone(),
            port: smtp.port,
            encryption,
            credentials: (!smtp.username.is_empty())
                .then(|| Credentials::new(smtp.username.clone(), smtp.password.expose().to_string())),
            timeout: smtp.timeout,
        };
        // As many sessions as mails the mailer sends at once; bursts reuse them. Waiting
        // for a free one, opening one and checking an idle one each have the deadline too.
        let pool = Pool::builder(sessions)
            .max_size(SESSIONS)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(smtp.timeout))
            .create_timeout(Some(smtp.timeout))
            .recycle_timeout(Some(smtp.timeout))
            .build()?;
        Ok(Route::Smtp { pool, pace: Arc::default() })
    }

    async fn send(&self, envelope: &Envelope, bytes: &[u8], smtp: &SmtpConfig) -> Result<Delivery, Failure> {
        let everybody = || Delivery { refused: Vec::new(), delivered: true };
        match self {
            Route::Outbox { files, dir, keep, written } => {
                files.send_raw(envelope, bytes).await.map_err(|e| {
                    Failure::transient(format!("writing to the outbox {} failed: {e}", dir.display())).caused_by(e)
                })?;
                // Listing the folder costs a stat per mail in it: done once every tenth of
                // `keep` mails (it cost the mailer more CPU than the mails themselves).
                if *keep > 0 && written.fetch_add(1, Ordering::Relaxed) + 1 >= (*keep / 10).max(1) {
                    written.store(0, Ordering::Relaxed);
                    let (dir, keep) = (dir.clone(), *keep);
                    let _ = tokio::task::spawn_blocking(move || prune(&dir, keep)).await;
                }
                Ok(everybody())
            }
            Route::Off => Ok(everybody()),
            Route::Smtp { pool, pace } => {
                pace.wait().await;
                let mut session = session(pool, smtp).await?;
                // A failed mail aborts the session (marked broken); the pool drops it. A
                // server silent past [smtp] timeout fails it too (`sessions::Deadlined`).
                match transaction::send(&mut session, envelope, bytes, is_recipients_own).await {
                    Ok(delivery) => {
                        pace.speed_up().await;
                        Ok(delivery)
                    }
                    Err(error) => {
                        if is_too_fast(&error) {
                            pace.slow_down().await;
                        }
                        Err(classify(error, smtp))
                    }
                }
            }
        }
    }
}

/// A logged-in session from the pool, or why there is none, in words a user can act on.
async fn session(pool: &Pool<Sessions>, smtp: &SmtpConfig) -> Result<deadpool::managed::Object<Sessions>, Failure> {
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(error) => classify_session(error, smtp),
        PoolError::Timeout(_) => Failure::transient(format!(
            "no SMTP session to {}:{} within [smtp] timeout ({} s)",
            smtp.host,
            smtp.port,
            smtp.timeout.as_secs()
        )),
        other => Failure::transient(format!("no SMTP session: {other}")),
    })
}

/// SMTP sessions kept open: the mailer sends up to four mails at once.
const SESSIONS: usize = 4;

/// Keeps the newest `keep` mails of the outbox, so that it cannot fill a disk.
fn prune(dir: &Path, keep: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut mails: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "eml"))
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    if mails.len() <= keep as usize {
        return;
    }
    mails.sort();
    for (_, old) in &mails[..mails.len() - keep as usize] {
        let _ = std::fs::remove_file(old);
    }
}

/// The advice for a TLS mode that does not fit the port, if it does not.
fn port_hint(smtp: &SmtpConfig) -> Option<&'static str> {
    match (smtp.effective_tls(), smtp.port) {
        (TlsMode::Starttls, 465) => Some("port 465 expects implicit TLS: set [smtp] tls = \"auto\" or \"tls\""),
        (TlsMode::Tls, port) if port != 465 => Some(
            "implicit TLS is normally used only on port 465: for 587 or 25 set [smtp] tls = \"auto\" or \"starttls\"",
        ),
        _ => None,
    }
}

/// Sorts a failure to open a session as [`classify`] does an SMTP failure.
fn classify_session(error: SessionError, smtp: &SmtpConfig) -> Failure {
    let address = format!("{}:{}", smtp.host, smtp.port);
    let hint = port_hint(smtp).map(String::from);
    let (permanent, advice) = match error {
        SessionError::Smtp(error) => return classify(error, smtp),
        SessionError::Connect(_) => (false, hint.unwrap_or_else(|| format!(
            "cannot reach {address}: check [smtp] host and port, and that this machine may connect out on that port (cloud hosts often block port 25)"
        ))),
        SessionError::Tls(_) => (true, hint.unwrap_or_else(|| {
            "the TLS connection failed: check [smtp] host, and [smtp] ca_file for a self-signed server".into()
        })),
        SessionError::Timeout => (false, hint.unwrap_or_else(|| {
            format!("{address} did not answer within [smtp] timeout ({} s)", smtp.timeout.as_secs())
        })),
    };
    let reason = format!("{error} — {advice}");
    if permanent { Failure::permanent(reason) } else { Failure::transient(reason) }.caused_by(error)
}

/// Whether the server says "too fast": 421/450/451, or a 5xx that says so in words (QQ
/// Mail and 163 answer `550 ... frequency limited`).
fn is_too_fast(error: &lettre::transport::smtp::Error) -> bool {
    let code = error.status().map(|c| c.to_string()).unwrap_or_default();
    let text = error.to_string().to_lowercase();
    matches!(code.as_str(), "421" | "450" | "451")
        || (code.starts_with('5')
            && ["frequency", "rate limit", "too many", "too fast", "limit exceeded"].iter().any(|w| text.contains(w)))
}

/// Whether a refusal is the recipient's own, for good: no such mailbox. Not "too fast",
/// not a relay or sender refusal (huiying's own setup), which suppressing would hide.
fn is_recipients_own(error: &lettre::transport::smtp::Error) -> bool {
    let text = error.to_string().to_lowercase();
    error.is_permanent()
        && !is_too_fast(error)
        && (["5.1.1", "5.1.2", "5.1.10", "5.2.1"].iter().any(|code| text.contains(code))
            || ["user unknown", "unknown user", "no such user", "mailbox not found", "does not exist", "no mailbox"]
                .iter()
                .any(|words| text.contains(words)))
}

/// Sorts an SMTP failure into retry or give up, and adds advice for the user: the
/// reason reads "what the server or network said — what to do about it".
pub(super) fn classify(error: lettre::transport::smtp::Error, smtp: &SmtpConfig) -> Failure {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    let code = error.status().map(|c| c.to_string()).unwrap_or_default();
    let port_hint = port_hint(smtp);
    let address = format!("{}:{}", smtp.host, smtp.port);
    let (permanent, hint) = if is_too_fast(&error) {
        (false, Some("the server asks to send slower; huiying spaces its mails out and tries again".to_string()))
    } else if code.starts_with("535") || code.starts_with("534") || code.starts_with("530") {
        (true, Some("the server refused the login: check [smtp] username and password. QQ Mail and 163 need the authorization code (授权码) from the mailbox settings, not the login password; Gmail needs an app password".to_string()))
    } else if code.starts_with("55") || code.starts_with("501") {
        (true, Some("the server refused the sender or a recipient: with QQ Mail, 163 and Gmail, [smtp] from must be the same address as [smtp] username; check the recipients' addresses".to_string()))
    } else if error.is_permanent() {
        (true, None)
    } else if error.is_client() {
        // The client and server share no way to talk: with STARTTLS required, the usual
        // cause is a server that offers no STARTTLS (lettre's other client errors are
        // missing auth mechanisms and SMTPUTF8, also configuration).
        let hint = match smtp.effective_tls() {
            TlsMode::Starttls => format!(
                "{address} does not offer STARTTLS: use port 465 with implicit TLS, or set [smtp] tls = \"none\" only for a trusted relay on your own network"
            ),
            _ => format!("{address} and huiying share no way to send this mail: check [smtp] tls, port and username"),
        };
        (true, Some(hint))
    } else if error.is_tls() {
        let hint = port_hint.map(String::from).unwrap_or_else(|| {
            "the TLS connection failed: check [smtp] host, and [smtp] ca_file for a self-signed server".into()
        });
        (true, Some(hint))
    } else if error.is_timeout() {
        let hint = port_hint.map(String::from).unwrap_or_else(|| {
            format!("{address} did not answer within [smtp] timeout ({} s)", smtp.timeout.as_secs())
        });
        (false, Some(hint))
    } else if error.is_transient() {
        (false, Some("the server asked to try again later; huiying will".to_string()))
    } else {
        (
            false,
            Some(format!(
                "cannot reach {address}: check [smtp] host and port, and that this machine may connect out on that port (cloud hosts often block port 25)"
            )),
        )
    };
    let reason = match hint {
        Some(hint) => format!("{message} — {hint}"),
        None => message,
    };
    if permanent { Failure::permanent(reason) } else { Failure::transient(reason) }.caused_by(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_outbox_keeps_its_newest_mails_with_at_most_a_tenth_more_between_prunes() {
        let outbox = tempfile::tempdir().unwrap();
        let smtp = SmtpConfig { outbox_dir: outbox.path().into(), outbox_keep: 20, ..SmtpConfig::default() };
        let transport = Transport::from_config(&smtp).unwrap();
        let count = || std::fs::read_dir(outbox.path()).unwrap().count();
        let mut most = 0;
        for n in 0..45 {
            let message = Message::builder()
                .from("huiying@example.com".parse().unwrap())
                .to("me@example.com".parse().unwrap())
                .subject(format!("mail {n}"))
                .body(String::from("hello"))
                .unwrap();
            transport.send(message, &smtp).await.unwrap();
            most = most.max(count());
        }
        assert!(most <= 22, "{most} mails lay in an outbox that keeps 20");
        assert!(most > 20, "pruned after every mail");
        assert!(count() <= 22);
    }
}
