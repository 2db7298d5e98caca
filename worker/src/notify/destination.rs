//! Where notifications may go. Webhook, Slack, Discord, Telegram and SMTP destinations that resolve
//! to loopback, private, link-local (cloud metadata: 169.254.169.254), shared, multicast or
//! unspecified addresses are refused unless an operator-level allowlist names them. The check runs
//! in the HTTP client's DNS resolver, on the addresses actually connected to, so a name that
//! resolves differently later (DNS rebinding) cannot slip through; IP literals are checked before
//! the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// An allowlist entry: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has an invalid prefix"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether an address is internal (not on the public internet).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared / CGNAT
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// The destination policy.
#[derive(Clone, Debug, Default)]
pub struct DestinationPolicy {
    pub allow: Vec<Cidr>,
}

impl DestinationPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip)) || !is_internal(ip)
    }

    /// Why a literal-IP URL is refused, if it is.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        if let Some(host) = url.host_str() {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = host.parse::<IpAddr>()
                && !self.permits(ip)
            {
                return Err(refusal(host));
            }
        }
        Ok(())
    }

    /// Resolves a host and keeps only permitted addresses.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .collect();
        let permitted: Vec<SocketAddr> = addrs.iter().copied().filter(|a| self.permits(a.ip())).collect();
        if permitted.is_empty() {
            return Err(refusal(host));
        }
        Ok(permitted)
    }
}

fn refusal(host: &str) -> String {
    format!(
        "destination {host} is a loopback, private, link-local or metadata address: refused (an operator can allow it with --allow-destination)"
    )
}

/// reqwest's resolver, applying the policy.
#[derive(Clone)]
pub struct GuardedResolver(pub Arc<DestinationPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs = policy
                .resolve(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_allowlist_wins() {
        let p =
            DestinationPolicy { allow: vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()] };
        assert!(p.permits("127.0.0.1".parse().unwrap()));
        assert!(p.permits("10.9.9.9".parse().unwrap()));
        assert!(!p.permits("127.0.0.2".parse().unwrap()));
        assert!(!p.permits("169.254.169.254".parse().unwrap()));
        assert!(
            p.check_url(&"http://169.254.169.254/latest/meta-data".parse().unwrap())
                .unwrap_err()
                .contains("refused")
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }
}
