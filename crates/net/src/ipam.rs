//! IP address management as pure functions: pick a subnet that collides with nothing,
//! pick a free address in a subnet, derive MAC and interface names. Persistence and
//! locking live in the store; these functions only decide.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::subnet::Subnet;

/// Linux's interface name limit (IFNAMSIZ - 1).
pub(crate) const IFNAME_MAX: usize = 15;

/// Why no address or subnet could be handed out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    /// Every host address of the subnet is leased.
    #[error("no free address left in subnet `{0}`")]
    Exhausted(Subnet),
    /// The requested address is outside the subnet, or is its network, broadcast or gateway.
    #[error("address `{ip}` is not usable in subnet `{subnet}`")]
    Unusable {
        /// The requested address.
        ip: Ipv4Addr,
        /// The network's subnet.
        subnet: Subnet,
    },
    /// The requested address is leased to another container.
    #[error("address `{0}` is already in use")]
    InUse(Ipv4Addr),
    /// The subnet overlaps another network or a host route.
    #[error("subnet `{subnet}` overlaps `{other}`")]
    Overlap {
        /// The subnet asked for.
        subnet: Subnet,
        /// What it collides with.
        other: Subnet,
    },
    /// No subnet of the pool is free.
    #[error("no free subnet left in the address pool")]
    PoolExhausted,
    /// The subnet has no room for a gateway and a container.
    #[error("subnet `{0}` is too small")]
    TooSmall(Subnet),
}

/// The default pool: 172.17-31.0.0/16, then 192.168.0-240.0/20 (Docker's choice).
pub(crate) fn default_pool() -> Vec<Subnet> {
    let a = (17u8..=31).map(|b| Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let b = (0u8..16).map(|i| Subnet::new(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    a.chain(b).filter_map(Result::ok).collect()
}

/// Fails if `subnet` overlaps any of `taken`.
pub(crate) fn check_free(subnet: &Subnet, taken: &[Subnet]) -> Result<(), IpamError> {
    match taken.iter().find(|t| t.overlaps(subnet)) {
        Some(other) => Err(IpamError::Overlap {
            subnet: *subnet,
            other: *other,
        }),
        None => Ok(()),
    }
}

/// The first subnet of `pool` that overlaps none of `taken`.
pub(crate) fn pick_subnet(pool: &[Subnet], taken: &[Subnet]) -> Result<Subnet, IpamError> {
    pool.iter()
        .find(|s| check_free(s, taken).is_ok())
        .copied()
        .ok_or(IpamError::PoolExhausted)
}

/// The gateway of a subnet: its first host address.
pub(crate) fn default_gateway(subnet: &Subnet) -> Result<Ipv4Addr, IpamError> {
    if subnet.host_count() < 2 {
        return Err(IpamError::TooSmall(*subnet));
    }
    subnet.nth(1).ok_or(IpamError::TooSmall(*subnet))
}

/// Whether `ip` may be leased: inside, and neither network, broadcast nor gateway.
fn usable(subnet: &Subnet, gateway: Ipv4Addr, ip: Ipv4Addr) -> bool {
    let host = u32::from(ip) & !subnet.mask();
    subnet.contains(ip) && ip != gateway && host != 0 && host != !subnet.mask()
}

/// Picks the address to lease: `requested` if usable and free, else the lowest free one.
pub(crate) fn allocate(
    subnet: &Subnet,
    gateway: Ipv4Addr,
    used: &HashSet<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, IpamError> {
    if let Some(ip) = requested {
        if !usable(subnet, gateway, ip) {
            return Err(IpamError::Unusable {
                ip,
                subnet: *subnet,
            });
        }
        if used.contains(&ip) {
            return Err(IpamError::InUse(ip));
        }
        return Ok(ip);
    }
    (1..=subnet.host_count())
        .filter_map(|n| subnet.nth(n))
        .find(|ip| usable(subnet, gateway, *ip) && !used.contains(ip))
        .ok_or(IpamError::Exhausted(*subnet))
}

/// A locally administered MAC derived from the address: `02:42:a:b:c:d`.
pub(crate) fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub(crate) fn format_mac(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// 64-bit FNV-1a, for short stable names.
pub(crate) fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// `prefix` followed by hex digits of `hash`, cut to the interface name limit.
pub(crate) fn ifname(prefix: &str, hash: u64) -> String {
    let mut name = format!("{prefix}{hash:016x}");
    name.truncate(IFNAME_MAX);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subnet {
        x.parse().unwrap()
    }

    #[test]
    fn allocates_lowest_free_and_skips_gateway() {
        let net = s("10.0.0.0/29");
        let gw = default_gateway(&net).unwrap();
        let mut used = HashSet::new();
        let mut got = Vec::new();
        while let Ok(ip) = allocate(&net, gw, &used, None) {
            used.insert(ip);
            got.push(ip.octets()[3]);
        }
        assert_eq!(got, vec![2, 3, 4, 5, 6]);
        assert_eq!(
            allocate(&net, gw, &used, None),
            Err(IpamError::Exhausted(net))
        );
    }

    #[test]
    fn requested_address_is_checked() {
        let net = s("10.0.0.0/24");
        let gw: Ipv4Addr = "10.0.0.1".parse().unwrap();
        let mut used = HashSet::new();
        let want: Ipv4Addr = "10.0.0.9".parse().unwrap();
        assert_eq!(allocate(&net, gw, &used, Some(want)), Ok(want));
        used.insert(want);
        assert_eq!(
            allocate(&net, gw, &used, Some(want)),
            Err(IpamError::InUse(want))
        );
        for bad in ["10.0.0.1", "10.0.0.0", "10.0.0.255", "10.0.1.3"] {
            let ip = bad.parse().unwrap();
            assert!(matches!(
                allocate(&net, gw, &used, Some(ip)),
                Err(IpamError::Unusable { .. })
            ));
        }
    }

    #[test]
    fn subnet_pick_avoids_taken() {
        let pool = default_pool();
        assert_eq!(pool[0], s("172.17.0.0/16"));
        let taken = vec![s("172.16.0.0/12")];
        assert_eq!(pick_subnet(&pool, &taken), Ok(s("192.168.0.0/20")));
        assert!(check_free(&s("172.20.1.0/24"), &taken).is_err());
        assert_eq!(
            pick_subnet(&pool[..1], &taken),
            Err(IpamError::PoolExhausted)
        );
        assert!(default_gateway(&s("10.0.0.0/31")).is_err());
    }

    #[test]
    fn names_fit_and_are_stable() {
        let a = ifname("bveth", fnv1a(&["net", "c1"]));
        assert_eq!(a.len(), IFNAME_MAX);
        assert_eq!(a, ifname("bveth", fnv1a(&["net", "c1"])));
        assert_ne!(a, ifname("bveth", fnv1a(&["net", "c2"])));
        assert_eq!(
            format_mac(&mac_for("172.17.0.2".parse().unwrap())),
            "02:42:ac:11:00:02"
        );
    }
}
