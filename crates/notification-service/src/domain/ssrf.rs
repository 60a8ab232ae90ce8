//! Which addresses a tenant's webhook URL may reach. A tenant must not be able to make the
//! platform call into its own network: loopback, link-local (cloud metadata at
//! 169.254.169.254), private, shared (CGNAT), unspecified, multicast and broadcast addresses
//! are refused, IPv4-mapped IPv6 included. The check runs on the addresses the name resolves
//! to at send time (DNS may change after registration); local development may allow them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a delivery may connect to `ip`.
pub fn allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => allowed_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => allowed_v4(v4),
            None => allowed_v6(v6),
        },
    }
}

fn allowed_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        // 0.0.0.0/8, 100.64.0.0/10 (shared address space), 198.18.0.0/15 (benchmarking),
        // 240.0.0.0/4 (reserved).
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn allowed_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, 2001:db8::/32 documentation.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

/// Why a URL is refused at registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadUrl(pub &'static str);

/// Checks a webhook URL's form: `https`, a host that is not a private address literal, no
/// user info, at most 2,048 bytes (`allow_private`, for local development: `http` and private
/// addresses too). Addresses are checked again at send time.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), BadUrl> {
    if url.len() > 2048 || url.chars().any(char::is_control) {
        return Err(BadUrl("at most 2,048 printable characters"));
    }
    let rest = match url.split_once("://") {
        Some(("https", rest)) => rest,
        Some(("http", rest)) if allow_private => rest,
        _ => return Err(BadUrl("an https:// URL")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(BadUrl("no user name or password in the URL"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(BadUrl("a host name"));
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && !allowed(ip)
        && !allow_private
    {
        return Err(BadUrl("not a public address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!allowed(bad.parse().unwrap()), "{bad}");
        }
        for good in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(allowed(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn urls_are_checked_for_form_and_literal_addresses() {
        assert_eq!(check_url("https://hooks.example.com/in", false), Ok(()));
        assert_eq!(check_url("http://hooks.example.com/in", true), Ok(()));
        assert_eq!(check_url("http://127.0.0.1:8080/in", true), Ok(()));
        for bad in [
            "http://hooks.example.com/in",
            "ftp://hooks.example.com",
            "https://user:pw@hooks.example.com",
            "https://",
            "https://127.0.0.1/x",
            "https://[::1]:8443/x",
            "https://169.254.169.254/latest/meta-data",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
    }
}
