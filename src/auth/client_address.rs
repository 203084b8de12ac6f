//! Who a client is, by address: the socket's, or the one a trusted proxy wrote last in
//! `X-Forwarded-For`. Every decision that goes by address (`ALLOW_NETWORKS`, the login throttle,
//! `MAX_CONNECTIONS_PER_IP`) takes it from here, so that they all see the same client.
//!
//! Two rules keep the address from being a way in:
//! - an address is canonical before it is matched: an IPv4 client of a dual-stack listener
//!   (`[::]:5000`) arrives as `::ffff:a.b.c.d` and must match `a.b.c.d/…`;
//! - a forwarded entry that does not parse fails closed: the client is then "unknown", which no
//!   network admits, rather than the proxy's own (often trusted) socket address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The client's address for every decision: with `trust_forwarded`, the last `X-Forwarded-For`
/// entry when the header is present (`None` when that entry does not parse), else the socket's.
pub fn client_address(
    headers: &http::HeaderMap,
    socket: Option<IpAddr>,
    trust_forwarded: bool,
) -> Option<IpAddr> {
    if trust_forwarded {
        let mut entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .peekable();
        if entries.peek().is_some() {
            let last = entries.last()?;
            return parse_forwarded(std::str::from_utf8(last).ok()?);
        }
    }
    socket.map(|a| a.to_canonical())
}

/// One `X-Forwarded-For` entry: `a.b.c.d`, `a.b.c.d:port`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:port` (what nginx, HAProxy, Envoy and cloud balancers write), canonical.
pub fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let address = if let Ok(ip) = entry.parse::<IpAddr>() {
        ip
    } else if let Ok(socket) = entry.parse::<SocketAddr>() {
        socket.ip()
    } else {
        let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
        IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?)
    };
    Some(address.to_canonical())
}

/// The group an address is counted in for per-client limits: an IPv4 address alone, an IPv6
/// address by its /64 (one subscriber's network: a client can use any address in it, as Docker
/// Hub's own limits assume).
pub fn limit_group(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for value in forwarded {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_entries_in_every_form_proxies_write() {
        for (entry, expected) in [
            ("203.0.113.9", "203.0.113.9"),
            (" 203.0.113.9:4711 ", "203.0.113.9"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("::ffff:10.1.0.5", "10.1.0.5"),
        ] {
            assert_eq!(parse_forwarded(entry), Some(ip(expected)), "{entry}");
        }
        for bad in [
            "unknown",
            "",
            "_hidden",
            "203.0.113",
            "[203.0.113.9]",
            "2001:db8::1:",
        ] {
            assert_eq!(parse_forwarded(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unparsable_last_entry_fails_closed_not_to_the_socket() {
        let proxy = Some(ip("10.1.0.1"));
        let address = |values: &[&str]| client_address(&headers(values), proxy, true);
        assert_eq!(address(&["10.9.9.9, unknown"]), None);
        assert_eq!(address(&["10.9.9.9", "garbage"]), None);
        assert_eq!(address(&["10.9.9.9,"]), None);
        assert_eq!(
            address(&["unknown, 203.0.113.9:4711"]),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(address(&[]), proxy, "no header: the socket's");
        // Untrusted, the header means nothing.
        assert_eq!(client_address(&headers(&["unknown"]), proxy, false), proxy);
    }

    #[test]
    fn socket_addresses_are_canonical() {
        let mapped = Some(ip("::ffff:127.0.0.1"));
        assert_eq!(
            client_address(&headers(&[]), mapped, false),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(
            limit_group(ip("2001:db8:1:2:aaaa::1")),
            limit_group(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            limit_group(ip("2001:db8:1:2::1")),
            limit_group(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_group(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(limit_group(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
