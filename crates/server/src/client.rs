//! The client's address, for per-address sign-in throttling.
//!
//! It is the TCP peer's address (axum's `ConnectInfo`, which [`crate::serve`]
//! provides; a request without one — as in router tests — has no address,
//! and is then throttled per account only). `X-Forwarded-For` is honoured
//! only from a peer in [`TrustedProxies`] (`PARLANCE_TRUSTED_PROXIES`,
//! empty by default), since any client can send it: the client is then the
//! rightmost address in the header that is not itself a trusted proxy
//! (what the nearest untrusted hop connected from; everything to its left
//! the client may have made up). Without trusted proxies, a server behind a
//! reverse proxy sees every client at the proxy's address, so the
//! per-address limit then counts all of them together.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// The environment variable listing the trusted reverse proxies.
pub const TRUSTED_PROXIES_ENV: &str = "PARLANCE_TRUSTED_PROXIES";

/// Reverse proxies whose `X-Forwarded-For` is believed: addresses or CIDR
/// ranges, e.g. `127.0.0.1, 10.0.0.0/8, fd00::/8`. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated addresses or `address/prefix` ranges; empty: none.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (address, prefix) = match entry.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (entry, None),
            };
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("{entry:?} is not an IP address or CIDR range"))?;
            let address = canonical(address);
            let bits = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => bits,
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= bits)
                    .ok_or_else(|| format!("{entry:?}: the prefix must be 0 to {bits}"))?,
            };
            ranges.push((address, prefix));
        }
        Ok(TrustedProxies(ranges))
    }
}

impl TrustedProxies {
    /// Whether `address` is one of the trusted proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0
            .iter()
            .any(|&(range, prefix)| match (range, address) {
                (IpAddr::V4(range), IpAddr::V4(address)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                    u32::from(range) & mask == u32::from(address) & mask
                }
                (IpAddr::V6(range), IpAddr::V6(address)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    u128::from(range) & mask == u128::from(address) & mask
                }
                _ => false,
            })
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port.
fn hop(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The client's address (see the module documentation): the peer's, or
/// from a trusted proxy the rightmost untrusted `X-Forwarded-For` entry.
pub fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let mut client = canonical(peer?.ip());
    if !trusted.contains(client) {
        return Some(client);
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.iter().rev() {
        // An entry that is no address: stop at the last hop we believe.
        let Some(address) = hop(entry) else {
            break;
        };
        client = canonical(address);
        if !trusted.contains(client) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(text.parse().unwrap(), 40_000))
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_it_claims() {
        let none = TrustedProxies::default();
        let headers = forwarded(&["198.51.100.1"]);
        assert_eq!(
            client_address(peer("203.0.113.7"), &headers, &none),
            ip("203.0.113.7")
        );
        assert_eq!(client_address(None, &headers, &none), None);
        // A trusted list that does not hold the peer changes nothing.
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            client_address(peer("203.0.113.7"), &headers, &proxies),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn from_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        let proxies: TrustedProxies = " 127.0.0.1, 10.0.0.0/8 ,fd00::/8".parse().unwrap();
        // The client made up the first entry; the proxies appended the rest.
        let headers = forwarded(&["1.2.3.4, 198.51.100.9", "10.1.2.3"]);
        assert_eq!(
            client_address(peer("127.0.0.1"), &headers, &proxies),
            ip("198.51.100.9")
        );
        let mapped = Some(SocketAddr::new("::ffff:10.0.0.1".parse().unwrap(), 1));
        assert_eq!(
            client_address(mapped, &headers, &proxies),
            ip("198.51.100.9")
        );
        let headers = forwarded(&["[2001:db8::1]:4711"]);
        assert_eq!(
            client_address(peer("fd00::2"), &headers, &proxies),
            ip("2001:db8::1")
        );
        // Nothing forwarded, or garbage: the last hop believed.
        assert_eq!(
            client_address(peer("127.0.0.1"), &HeaderMap::new(), &proxies),
            ip("127.0.0.1")
        );
        let headers = forwarded(&["1.2.3.4, not-an-address, 10.9.9.9"]);
        assert_eq!(
            client_address(peer("127.0.0.1"), &headers, &proxies),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_ranges() {
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        let proxies: TrustedProxies = "192.168.0.0/16,::1".parse().unwrap();
        assert!(proxies.contains("192.168.4.5".parse().unwrap()));
        assert!(!proxies.contains("192.169.0.1".parse().unwrap()));
        assert!(proxies.contains("::1".parse().unwrap()));
        assert!(!proxies.contains("::2".parse().unwrap()));
        let all: TrustedProxies = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["proxy.local", "10.0.0.0/33", "::/129", "10.0.0.0/x"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }
}
