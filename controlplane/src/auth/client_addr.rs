//! The client's address for per-client limits (the room-password limiter): the TCP peer, or —
//! only when the peer is one of the operator's trusted proxies (`http.trusted_proxies`) —
//! the client that proxy names in `X-Forwarded-For`.
//!
//! Trusting the header from anyone would let a guesser pick a fresh address per attempt, and
//! ignoring it behind a proxy would put every client behind one address, so one guesser
//! would lock everyone out. `X-Forwarded-For` is read from the right (the hop nearest to us)
//! and trusted proxies are skipped: the first address that is not a trusted proxy is the
//! client. A malformed entry stops the walk at the last good hop.
//!
//! Must never: trust a header that did not come through a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies (CIDRs) whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8`-style CIDRs; a bare address is one host. The error names the
    /// entry at fault.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, String> {
        list.iter()
            .map(|s| {
                let s = s.as_ref().trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{s}` is not a CIDR (e.g. 10.0.0.0/8) or an address"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer` (see the module docs).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        // Every X-Forwarded-For line, in order, as one list.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:4711` or `203.0.113.7:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`, from dual-stack sockets) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", HeaderValue::from_str(l).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.1"]).unwrap();
        let h = headers(&["203.0.113.7"]);
        assert_eq!(trusted.client(ip("10.1.2.3"), &h), ip("203.0.113.7"));
        assert_eq!(trusted.client(ip("192.0.2.1"), &h), ip("203.0.113.7"));
        // Anyone else may send the header; it is ignored.
        assert_eq!(trusted.client(ip("198.51.100.4"), &h), ip("198.51.100.4"));
        assert_eq!(
            TrustedProxies::default().client(ip("10.1.2.3"), &h),
            ip("10.1.2.3")
        );
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn the_walk_goes_right_to_left_past_trusted_hops_only() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        // A client-supplied entry on the left is not believed: the first untrusted hop from
        // the right is the client.
        let h = headers(&["1.2.3.4, 203.0.113.7, 10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        // Several header lines are one list.
        let h = headers(&["1.2.3.4", "203.0.113.7", "10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        // Ports and brackets, IPv6.
        let h = headers(&["[2001:db8::5]:4711"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("2001:db8::5"));
        // Garbage stops the walk at the last good hop.
        let h = headers(&["203.0.113.7, nonsense, 10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("10.0.0.2"));
        // IPv4-mapped peers match IPv4 CIDRs.
        let h = headers(&["203.0.113.9"]);
        assert_eq!(trusted.client(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn bad_entries_are_named() {
        let e = TrustedProxies::parse(&["10.0.0.0/8", "proxy.local"]).unwrap_err();
        assert!(e.contains("proxy.local"), "{e}");
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
    }
}
