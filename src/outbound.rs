//! Outbound HTTP to addresses someone else named (a provider's picture link, a webhook
//! URL, an edit's input): resolved once, refused when private or local unless allowed,
//! and pinned to the checked address for the connection, so a second lookup cannot
//! answer differently. Never through `HTTP(S)_PROXY`: a proxy would look the name up
//! again itself, past the check.

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

/// A client that reaches `host` only at `addresses`, directly (no proxy), and follows
/// no redirect.
pub(crate) fn pinned_client(
    host: &str,
    addresses: &[SocketAddr],
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
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
            // Every range that carries an IPv4 address inside is as public as that address.
            if let Some(v4) = embedded_ipv4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let [first, second, ..] = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside some networks)
                || (first == 0x64 && second == 0xff9b) // local-use NAT64 (64:ff9b:1::/48) and the rest of 64:ff9b::/32
                || (first == 0x2001 && second == 0x0db8) // documentation
                || (first == 0x0100 && v6.segments()[1..4] == [0, 0, 0])) // discard-only
        }
    }
}

/// The IPv4 address an IPv6 address stands for, where its range embeds one: IPv4-mapped
/// (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`, RFC
/// 6052), 6to4 (`2002:AABB:CCDD::`, RFC 3056) and Teredo (`2001:0:…`, whose client address
/// is the last 32 bits inverted; its server address is checked too, as the first one that
/// is not public).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    use std::net::Ipv4Addr;
    let s = v6.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, high, low] => Some(v4(high, low)),
        // `::` and `::1` are themselves, not IPv4-compatible addresses.
        [0, 0, 0, 0, 0, 0, high, low] if high != 0 => Some(v4(high, low)),
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => Some(v4(high, low)),
        [0x2002, high, low, ..] => Some(v4(high, low)),
        [0x2001, 0, server_high, server_low, _, _, high, low] => {
            let server = v4(server_high, server_low);
            let client = v4(!high, !low);
            Some(if is_public(IpAddr::V4(server)) { client } else { server })
        }
        _ => None,
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
            "::127.0.0.1",
            "64:ff9b::7f00:1",                      // NAT64 of 127.0.0.1
            "64:ff9b::a9fe:a9fe",                   // NAT64 of the metadata address
            "64:ff9b:1::a00:1",                     // local-use NAT64
            "2002:7f00:1::1",                       // 6to4 of 127.0.0.1
            "2002:c0a8:101::1",                     // 6to4 of 192.168.1.1
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1
            "2001:0:a00:1::1",                      // Teredo, server 10.0.0.1
            "fec0::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(blocked.parse().unwrap()), "{blocked}");
        }
        for allowed in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(is_public(allowed.parse().unwrap()), "{allowed}");
        }
    }
}
