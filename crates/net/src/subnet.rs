//! IPv4 subnets: parsing, containment, overlap and host enumeration.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parse or validation failure of a subnet string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubnetError {
    /// Not of the form `a.b.c.d/len`.
    #[error("parse subnet `{0}`")]
    Syntax(String),
    /// Prefix length above 32.
    #[error("prefix length {0} of subnet is above 32")]
    Prefix(u8),
    /// Host bits are set, e.g. `10.0.0.1/24`.
    #[error("subnet `{0}` has host bits set")]
    HostBits(String),
}

/// An IPv4 network: address with host bits clear, and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// A subnet from a network address and prefix; host bits must be clear.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, SubnetError> {
        if prefix > 32 {
            return Err(SubnetError::Prefix(prefix));
        }
        let s = Self { addr, prefix };
        if u32::from(addr) & !s.mask() != 0 {
            return Err(SubnetError::HostBits(format!("{addr}/{prefix}")));
        }
        Ok(s)
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// Whether `ip` lies inside this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let m = Subnet {
            addr: Ipv4Addr::UNSPECIFIED,
            prefix: shorter,
        }
        .mask();
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The `n`th address of the subnet (0 is the network address), if inside it.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        if n > !self.mask() {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.addr) + n))
    }

    /// The number of addresses usable by hosts (excluding network and broadcast).
    pub fn host_count(&self) -> u32 {
        (!self.mask()).saturating_sub(1)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || SubnetError::Syntax(s.to_owned());
        let (a, p) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| syntax())?;
        let prefix: u8 = p.parse().map_err(|_| syntax())?;
        Subnet::new(addr, prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let s: Subnet = "172.17.0.0/16".parse().unwrap();
        assert_eq!(s.to_string(), "172.17.0.0/16");
        assert!(matches!(
            "10.0.0.1/24".parse::<Subnet>(),
            Err(SubnetError::HostBits(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Subnet>(),
            Err(SubnetError::Prefix(33))
        ));
        assert!(matches!(
            "10.0.0.0".parse::<Subnet>(),
            Err(SubnetError::Syntax(_))
        ));
        assert!("0.0.0.0/0".parse::<Subnet>().is_ok());
    }

    #[test]
    fn containment_and_overlap() {
        let a: Subnet = "10.1.0.0/16".parse().unwrap();
        let b: Subnet = "10.1.2.0/24".parse().unwrap();
        let c: Subnet = "10.2.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(a.contains("10.1.255.3".parse().unwrap()));
        assert!(!b.contains("10.1.3.1".parse().unwrap()));
    }

    #[test]
    fn enumerates_hosts() {
        let s: Subnet = "192.168.5.0/30".parse().unwrap();
        assert_eq!(s.host_count(), 2);
        assert_eq!(s.nth(1), Some("192.168.5.1".parse().unwrap()));
        assert_eq!(s.nth(3), Some("192.168.5.3".parse().unwrap()));
        assert_eq!(s.nth(4), None);
    }
}
