//! `huiying mail doctor`: what receivers will find in DNS about the sender. The From
//! domain's SPF, each DKIM selector's key (and whether it is the configured one), and
//! DMARC; for each thing missing or wrong, the exact record to publish. In `[smtp]
//! language`. DNS is the system's resolver, or `[smtp] dns_server` (`host:port`).

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::config::{Config, Language};
use crate::smtp::dkim::DkimKey;

/// One thing checked: what, and either what was found or what to publish.
type Finding = crate::check::Checked;

/// The lines to print and whether everything is in place.
pub async fn run(config: &Config) -> anyhow::Result<(Vec<String>, bool)> {
    let zh = config.smtp.language == Language::ZhCn;
    let from = config.smtp.from.rsplit_once('@').map(|(_, domain)| domain.trim_end_matches('>').trim().to_string());
    let Some(domain) = from.filter(|d| !d.is_empty()) else {
        anyhow::bail!("[smtp] from holds no address: set it to the address your mail comes from");
    };
    let dns = resolver(&config.smtp.dns_server)?;
    let mut findings = vec![spf(&dns, &domain, zh).await];
    let dkim = &config.smtp.dkim;
    if dkim.enabled() {
        for (file, selector) in dkim.private_key_file.iter().zip(&dkim.selector) {
            findings.push(dkim_key(&dns, dkim.domain.trim(), selector.trim(), file, zh).await);
        }
    } else {
        let advice = match zh {
            true => {
                "未配置 [smtp.dkim]：经 QQ、163、Gmail 中继发信时由它们签名；以自己的域名发信请运行 `huiying mail dkim-keygen`"
            }
            false => {
                "[smtp.dkim] is not set: QQ, 163 and Gmail relays sign for you; for your own domain run `huiying mail dkim-keygen`"
            }
        };
        findings.push(Finding { item: "DKIM".into(), outcome: Ok(advice.into()) });
    }
    findings.push(dmarc(&dns, &domain, zh).await);

    let words = if zh { ("正常", "缺少") } else { ("ok", "MISSING") };
    Ok(crate::check::report(findings, words))
}

/// The system's resolver, or the one server `dns_server` names.
fn resolver(dns_server: &str) -> anyhow::Result<TokioResolver> {
    if dns_server.trim().is_empty() {
        return Ok(TokioResolver::builder_tokio()?.build()?);
    }
    let address: SocketAddr = dns_server
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("bad configuration: smtp.dns_server {dns_server:?}: expected ip:port"))?;
    let mut server = NameServerConfig::udp_and_tcp(address.ip());
    for connection in &mut server.connections {
        connection.port = address.port();
    }
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
    Ok(TokioResolver::builder_with_config(config, TokioRuntimeProvider::default()).build()?)
}

/// The TXT records at `name`, each joined from its strings (none when there is no record).
async fn txt(dns: &TokioResolver, name: &str) -> Vec<String> {
    let Ok(lookup) = dns.txt_lookup(format!("{name}.")).await else { return Vec::new() };
    lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => {
                Some(txt.txt_data.iter().map(|piece| String::from_utf8_lossy(piece).into_owned()).collect())
            }
            _ => None,
        })
        .collect()
}

async fn spf(dns: &TokioResolver, domain: &str, zh: bool) -> Finding {
    let found = txt(dns, domain).await.into_iter().find(|record| record.starts_with("v=spf1"));
    let outcome = match found {
        Some(record) => Ok(record),
        None if zh => Err(format!(
            "在 {domain} 发布 TXT 记录 \"v=spf1 ip4:<发信服务器的地址> ~all\"（经中继发信则写 include:<中继的 SPF 域名>）"
        )),
        None => Err(format!(
            "publish the TXT record \"v=spf1 ip4:<your sending server's address> ~all\" at {domain} (or include:<your relay's SPF domain>)"
        )),
    };
    Finding { item: format!("SPF {domain}"), outcome }
}

async fn dkim_key(dns: &TokioResolver, domain: &str, selector: &str, file: &str, zh: bool) -> Finding {
    let name = format!("{selector}._domainkey.{domain}");
    let item = format!("DKIM {name}");
    let ours = match std::fs::read_to_string(file).map_err(|e| e.to_string()).and_then(|pem| DkimKey::from_pem(&pem)) {
        Ok(key) => key,
        Err(why) => return Finding { item, outcome: Err(format!("smtp.dkim.private_key_file {file}: {why}")) },
    };
    let (Ok(record), Ok(public)) = (ours.dns_record(), ours.public_key()) else {
        return Finding { item, outcome: Err(format!("smtp.dkim.private_key_file {file}: unreadable key")) };
    };
    let published = txt(dns, &name).await.into_iter().find(|r| r.contains("p="));
    let published_key = published.as_deref().and_then(|r| {
        r.split(';').find_map(|tag| tag.trim().strip_prefix("p=")).map(|p| p.split_whitespace().collect::<String>())
    });
    let outcome = match published_key {
        Some(key) if key == public => {
            Ok(if zh { "与配置的密钥一致".into() } else { "matches the configured key".into() })
        }
        Some(_) if zh => Err(format!("{name} 上的公钥与 {file} 不一致，请改为 TXT 记录 \"{record}\"")),
        Some(_) => {
            Err(format!("the key at {name} is not the one in {file}: replace it with the TXT record \"{record}\""))
        }
        None if zh => Err(format!("在 {name} 发布 TXT 记录 \"{record}\"")),
        None => Err(format!("publish the TXT record \"{record}\" at {name}")),
    };
    Finding { item, outcome }
}

async fn dmarc(dns: &TokioResolver, domain: &str, zh: bool) -> Finding {
    let name = format!("_dmarc.{domain}");
    let found = txt(dns, &name).await.into_iter().find(|record| record.starts_with("v=DMARC1"));
    let outcome = match found {
        Some(record) => Ok(record),
        None if zh => Err(format!("在 {name} 发布 TXT 记录 \"v=DMARC1; p=none; rua=mailto:<您的地址>\"")),
        None => Err(format!("publish the TXT record \"v=DMARC1; p=none; rua=mailto:<your address>\" at {name}")),
    };
    Finding { item: format!("DMARC {name}"), outcome }
}
