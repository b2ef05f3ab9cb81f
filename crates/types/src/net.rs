//! Network ranges in CIDR notation (`10.0.0.0/8`, `fd00::/8`), read as Go's
//! `net.ParseCIDR` reads them, for the settings that allow clients by network
//! (`http_config.allow_write_http_from`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network: an address with all bits past the prefix cleared, and the prefix
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Text that is not `address/prefix-length`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR address: {0}")]
pub struct CidrError(pub String);

impl Cidr {
    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`) counts as its IPv4 address, as in Go.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(ip).into(), 32, self.prefix) == u32::from(net).into()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(ip), 128, self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// `bits` with everything after the first `prefix` of `width` cleared.
fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let keep = u128::MAX << (width - prefix);
    bits & keep & (u128::MAX >> (128 - u32::from(width)))
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        // Go accepts decimal digits only: no sign, no spaces, no empty length.
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let mut prefix: u8 = len.parse().ok().filter(|p| *p <= width).ok_or_else(bad)?;
        // Go's `IPNet.Contains` reads an IPv4-mapped network
        // (`::ffff:10.0.0.0/104`) as the IPv4 one it maps (`10.0.0.0/8`).
        // With a prefix shorter than the mapping's 96 bits the masked network
        // is no longer mapped, and Go keeps it an IPv6 one that no IPv4 client
        // is in; so does this.
        let addr = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                prefix -= 96;
                addr.to_canonical()
            }
            other => other,
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4((masked(u32::from(a).into(), 32, prefix) as u32).into()),
            IpAddr::V6(a) => IpAddr::V6(masked(u128::from(a), 128, prefix).into()),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_masks_like_go() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert_eq!("fd00::1/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
        assert_eq!(
            "1.2.3.4/32".parse::<Cidr>().unwrap().to_string(),
            "1.2.3.4/32"
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "x/8",
            "",
        ] {
            assert_eq!(bad.parse::<Cidr>(), Err(CidrError(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn contains_by_family_and_prefix() {
        let c: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("127.1.2.3")));
        assert!(c.contains(ip("::ffff:127.0.0.1")));
        assert!(!c.contains(ip("128.0.0.1")));
        assert!(!c.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("2001:db8::1")));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains(ip("10.1.2.3")) && mapped.contains(ip("::ffff:10.1.2.3")));
        // Shorter than the mapping: an IPv6 network, no IPv4 client in it.
        let wide: Cidr = "::ffff:10.0.0.0/8".parse().unwrap();
        assert_eq!(wide.to_string(), "::/8");
        assert!(!wide.contains(ip("10.1.2.3")) && !wide.contains(ip("8.8.8.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let one: Cidr = "10.0.0.7/32".parse().unwrap();
        assert!(one.contains(ip("10.0.0.7")) && !one.contains(ip("10.0.0.6")));
    }
}
