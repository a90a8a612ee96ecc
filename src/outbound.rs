//! Outbound HTTP to addresses someone else named (a provider's picture link, a webhook
//! URL): resolved once, refused when private or local unless allowed, and pinned to the
//! checked address for the connection, so a second lookup cannot answer differently.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

/// Why a URL may not be called.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("{0} cannot be resolved: {1}")]
    Unresolvable(String, std::io::Error),
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("{0} is not an http(s) URL with a host")]
    NotHttp(String),
    /// The host resolves to this private, loopback, link-local or metadata address.
    #[error("it resolves to {0}, a private or local address")]
    Private(IpAddr),
}

/// The addresses of `url`'s host, each public unless `allow_private`.
pub(crate) async fn resolve(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, Refusal> {
    let host = match url.host_str() {
        Some(host) if matches!(url.scheme(), "http" | "https") => host,
        _ => return Err(Refusal::NotHttp(url.to_string())),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| Refusal::Unresolvable(host.into(), e))?
        .collect();
    if addresses.is_empty() {
        return Err(Refusal::NoAddress(host.into()));
    }
    if !allow_private && let Some(blocked) = addresses.iter().find(|a| !is_public(a.ip())) {
        return Err(Refusal::Private(blocked.ip()));
    }
    Ok(addresses)
}

/// A client that reaches `host` only at `addresses` and follows no redirect.
pub(crate) fn pinned_client(
    host: &str,
    addresses: &[SocketAddr],
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .resolve_to_addrs(host, addresses)
        .build()
}

/// Addresses an outside party may make us call: public unicast only.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local() // includes 169.254.169.254, the cloud metadata address
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(blocked.parse().unwrap()), "{blocked}");
        }
        for allowed in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(allowed.parse().unwrap()), "{allowed}");
        }
    }
}
