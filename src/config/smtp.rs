//! `[smtp]`: how notifications are mailed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{Language, Secret, one_or_many, seconds};
use crate::failure::RetryPolicy;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Send real mail when true. False: no mail at all, unless `outbox_dir` is set.
    pub enable: bool,
    pub host: String,
    pub port: u16,
    pub username: String,
    /// The mailbox's authorization code (QQ, 163) or app password (Gmail).
    pub password: Secret,
    /// Sender address, optionally with a display name: `绘影 <me@qq.com>`.
    pub from: String,
    /// Recipient(s): one address, several separated by commas, or a TOML array.
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// Copy recipients, same forms as `to`.
    #[serde(deserialize_with = "one_or_many")]
    pub cc: Vec<String>,
    /// Blind-copy recipients (not shown in the mail), same forms as `to`.
    #[serde(deserialize_with = "one_or_many")]
    pub bcc: Vec<String>,
    /// Addresses (or `@domain` for a whole domain) that a request may name as its own
    /// recipient with `notify_email`. Empty: requests cannot choose recipients.
    #[serde(deserialize_with = "one_or_many")]
    pub allowed_recipients: Vec<String>,
    /// Also attach the picture inline (`cid:`), so it shows when the link is unreachable.
    pub attach_image: bool,
    /// At most this many mails a minute (providers throttle bursts); 0: no limit.
    pub max_per_minute: u32,
    pub tls: TlsMode,
    /// Extra trusted CA certificate (PEM), e.g. for a self-signed relay.
    pub ca_file: String,
    /// Seconds for connecting and for each SMTP command.
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Deliveries of one notification before a transient failure becomes final.
    pub max_attempts: u32,
    /// Seconds before the first retry; doubles with each attempt.
    #[serde(with = "seconds")]
    pub retry_delay: Duration,
    /// With `enable = false`: write each mail as an .eml file into this folder instead of
    /// sending it. Empty: no mail at all.
    pub outbox_dir: PathBuf,
    /// The newest mails the outbox keeps; older ones are removed (the folder is pruned
    /// every tenth of this many mails, so up to 10% more lie there in between). 0: keep all.
    pub outbox_keep: u32,
    /// `zh-CN` (default) or `en`: which template set to use.
    pub language: Language,
    /// Folder of your own templates (`<language>/<kind>.<part>.hbs`); empty: the
    /// templates built into the binary.
    pub templates_dir: PathBuf,
    /// The readers' time zone for every time a mail shows (IANA, `Asia/Shanghai`); empty:
    /// `Asia/Shanghai` with the Chinese templates, `UTC` with the English.
    pub timezone: String,
    /// An address that also takes unsubscribe requests (`List-Unsubscribe: <mailto:...>`);
    /// empty: the one-click link only.
    pub unsubscribe_mailto: String,
    /// Days an address whose server refused it for good (user unknown) gets no mail.
    pub suppress_days: u32,
    /// The DNS server `huiying mail doctor` asks (`127.0.0.1:53`); empty: the system's.
    pub dns_server: String,
    /// Limits per recipient domain, for mail delivered straight to each domain's servers
    /// (each provider throttles on its own): `[smtp.domains."qq.com"] max_per_minute = 20`.
    pub domains: BTreeMap<String, DomainLimits>,
    /// `[smtp.dkim]`: sign every mail for the From domain (off while `domain` is empty).
    pub dkim: DkimSettings,
}

/// `[smtp.domains."<domain>"]`: how fast mail to one recipient domain may go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainLimits {
    /// At most this many mails a minute to addresses at the domain; 0: no limit.
    pub max_per_minute: u32,
}

/// `[smtp.dkim]`: which domain signs, under which selector(s), with which key(s).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DkimSettings {
    /// The signing domain (`d=`), normally the domain of `[smtp] from`; empty: no signature.
    pub domain: String,
    /// The selector (`s=`) of each key, in the order of `private_key_file`: each key is
    /// its own DNS record, `<selector>._domainkey.<domain>`.
    #[serde(deserialize_with = "one_or_many")]
    pub selector: Vec<String>,
    /// The private key(s), PEM: RSA (2048 bits or more) or Ed25519. Two files, two
    /// signatures (RSA for every receiver, Ed25519 for those that read it).
    #[serde(deserialize_with = "one_or_many")]
    pub private_key_file: Vec<String>,
}

impl Default for DkimSettings {
    fn default() -> Self {
        Self { domain: String::new(), selector: vec!["huiying".into()], private_key_file: Vec::new() }
    }
}

impl DkimSettings {
    /// Whether mail is signed at all.
    pub fn enabled(&self) -> bool {
        !self.domain.trim().is_empty()
    }
}

/// How the mailer secures the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Implicit TLS on port 465, STARTTLS (required) on every other port.
    Auto,
    Starttls,
    Tls,
    /// Plain text; only for a trusted relay on the same host or network.
    None,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            enable: false,
            host: String::new(),
            port: 587,
            username: String::new(),
            password: Secret::default(),
            from: String::new(),
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            allowed_recipients: Vec::new(),
            attach_image: false,
            max_per_minute: 0,
            tls: TlsMode::Auto,
            ca_file: String::new(),
            timeout: Duration::from_secs(30),
            max_attempts: 10,
            retry_delay: Duration::from_secs(30),
            outbox_dir: PathBuf::new(),
            outbox_keep: 1000,
            language: Language::ZhCn,
            templates_dir: PathBuf::new(),
            timezone: String::new(),
            unsubscribe_mailto: String::new(),
            suppress_days: 30,
            dns_server: String::new(),
            domains: BTreeMap::new(),
            dkim: DkimSettings::default(),
        }
    }
}

/// `[smtp] allowed_recipients` on its own: whom a request may have mailed (ingest needs
/// this and nothing else of `[smtp]`).
#[derive(Debug, Clone, Default)]
pub struct AllowedRecipients(Vec<String>);

impl AllowedRecipients {
    /// Whether a request may send its notification to `address`: listed, or at a listed
    /// `@domain`, in any case.
    pub fn allows(&self, address: &str) -> bool {
        let address = address.trim().to_ascii_lowercase();
        self.0.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            match allowed.strip_prefix('@') {
                Some(domain) => address.rsplit_once('@').is_some_and(|(_, d)| d == domain),
                None => address == allowed,
            }
        })
    }

    /// Whether a request may choose its recipient at all.
    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }
}

impl SmtpConfig {
    /// The readers' time zone (`timezone`, else by `language`); a name the zone database
    /// does not know is refused when the configuration is loaded.
    pub fn reader_zone(&self) -> jiff::tz::TimeZone {
        let name = match (self.timezone.trim(), self.language) {
            ("", Language::ZhCn) => "Asia/Shanghai",
            ("", Language::En) => "UTC",
            (name, _) => name,
        };
        jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// `allowed_recipients`, as a value that answers who is allowed.
    pub fn recipients(&self) -> AllowedRecipients {
        AllowedRecipients(self.allowed_recipients.clone())
    }

    /// Mail server failures: `retry_delay`, doubling to an hour, `max_attempts` tries.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.retry_delay,
            cap: Duration::from_secs(3600),
            jitter: 0.2,
            max_attempts: self.max_attempts,
        }
    }

    /// The mode actually used on this port.
    pub fn effective_tls(&self) -> TlsMode {
        match self.tls {
            TlsMode::Auto if self.port == 465 => TlsMode::Tls,
            TlsMode::Auto => TlsMode::Starttls,
            other => other,
        }
    }
}
