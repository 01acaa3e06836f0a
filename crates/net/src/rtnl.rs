//! rtnetlink requests: links (bridge, veth), addresses and routes, over one synchronous
//! socket that acts in the network namespace of the thread that opened it.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::socket::SockProtocol;

use crate::netlink::attr::{parse_str, parse_u32};
use crate::netlink::{AttrIter, MsgBuilder, NLM_F_CREATE, NLM_F_EXCL, NetlinkError, Socket};
use crate::subnet::Subnet;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const AF_INET: u8 = 2;
const IFF_UP: u32 = 1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// The `ifinfomsg` header: family, type, index, flags, change mask.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// One IPv4 route of the main table, as far as collision checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteEntry {
    pub(crate) dst: Subnet,
    pub(crate) oif: Option<u32>,
}

/// The parameters of a veth pair whose peer is created directly in another netns.
#[derive(Debug)]
pub(crate) struct VethSpec<'a> {
    pub(crate) host_name: &'a str,
    pub(crate) master: u32,
    pub(crate) peer_name: &'a str,
    pub(crate) peer_netns: BorrowedFd<'a>,
    pub(crate) peer_mac: [u8; 6],
}

/// An rtnetlink socket in the calling thread's network namespace.
#[derive(Debug)]
pub(crate) struct Rtnl {
    sock: Socket,
}

impl Rtnl {
    pub(crate) fn open() -> Result<Self, NetlinkError> {
        Ok(Self {
            sock: Socket::open(SockProtocol::NetlinkRoute)?,
        })
    }

    /// The index of link `name`, or `None` if there is none.
    pub(crate) fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut m = MsgBuilder::new(RTM_GETLINK, 0).header(&ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, name);
        let what = format!("get link `{name}`");
        let payload = match self.sock.get(m, &what) {
            Ok(p) => p,
            Err(e) if e.errno() == Some(Errno::ENODEV) => return Ok(None),
            Err(e) => return Err(e),
        };
        // ifinfomsg: family, pad, type (2), then the index.
        payload
            .get(4..8)
            .and_then(parse_u32)
            .map(Some)
            .ok_or(NetlinkError::Malformed { what })
    }

    /// The names of every link in this namespace.
    pub(crate) fn link_names(&mut self) -> Result<Vec<String>, NetlinkError> {
        let m = MsgBuilder::new(RTM_GETLINK, 0).header(&ifinfomsg(0, 0, 0));
        let payloads = self.sock.dump(m, "list links")?;
        Ok(payloads
            .iter()
            .filter_map(|p| {
                AttrIter::new(p.get(16..)?)
                    .find(|(k, _)| *k == IFLA_IFNAME)
                    .map(|(_, v)| parse_str(v))
            })
            .collect())
    }

    /// Creates bridge `name` with a fixed MAC, brings it up, and returns its index.
    /// `EEXIST` is success. The fixed MAC matters: a bridge without one takes the lowest
    /// MAC of its ports and changes it when that port leaves, which leaves stale ARP
    /// entries for the gateway in every other container.
    pub(crate) fn ensure_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<u32, NetlinkError> {
        let mut m = MsgBuilder::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
            .header(&ifinfomsg(0, IFF_UP, IFF_UP));
        m.attr_str(IFLA_IFNAME, name);
        m.attr(IFLA_ADDRESS, &mac);
        m.begin_nest(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "bridge");
        m.end_nest();
        match self.sock.request(m, &format!("add bridge `{name}`")) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        let index = self.link_index(name)?.ok_or_else(|| NetlinkError::Kernel {
            what: format!("find bridge `{name}`"),
            errno: Errno::ENODEV,
        })?;
        self.set_up(index, name)?;
        Ok(index)
    }

    /// Sets link `index` up.
    pub(crate) fn set_up(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let m = MsgBuilder::new(RTM_NEWLINK, 0).header(&ifinfomsg(index, IFF_UP, IFF_UP));
        self.sock.request(m, &format!("set link `{name}` up"))
    }

    /// Creates a veth pair: the host end enslaved to `master` and up, the peer created
    /// directly inside `peer_netns` under its final name with a fixed MAC address.
    pub(crate) fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<(), NetlinkError> {
        let mut m = MsgBuilder::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
            .header(&ifinfomsg(0, IFF_UP, IFF_UP));
        m.attr_str(IFLA_IFNAME, spec.host_name);
        m.attr_u32(IFLA_MASTER, spec.master);
        m.begin_nest(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        m.begin_nest(IFLA_INFO_DATA);
        // VETH_INFO_PEER carries a whole ifinfomsg followed by the peer's attributes.
        m.begin_nest(VETH_INFO_PEER);
        let raw = spec.peer_netns.as_raw_fd();
        let peer_header = ifinfomsg(0, 0, 0);
        m.attr_raw_inline(&peer_header);
        m.attr_str(IFLA_IFNAME, spec.peer_name);
        m.attr(IFLA_ADDRESS, &spec.peer_mac);
        m.attr_u32(IFLA_NET_NS_FD, u32::try_from(raw).unwrap_or(u32::MAX));
        m.end_nest();
        m.end_nest();
        m.end_nest();
        self.sock
            .request(m, &format!("add veth `{}`", spec.host_name))
    }

    /// Deletes link `name`; a link that does not exist is success.
    pub(crate) fn delete_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut m = MsgBuilder::new(RTM_DELLINK, 0).header(&ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, name);
        match self.sock.request(m, &format!("delete link `{name}`")) {
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(()),
            other => other,
        }
    }

    /// Adds `addr/prefix` to link `index`; an address already present is success.
    pub(crate) fn add_address(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let mut h = [0u8; 8];
        h[0] = AF_INET;
        h[1] = prefix;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut m = MsgBuilder::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL).header(&h);
        m.attr(IFA_LOCAL, &addr.octets());
        m.attr(IFA_ADDRESS, &addr.octets());
        match self
            .sock
            .request(m, &format!("add address `{addr}/{prefix}`"))
        {
            Err(e) if e.errno() == Some(Errno::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Adds a default route via `gateway` out of link `index`.
    pub(crate) fn add_default_route(
        &mut self,
        index: u32,
        gateway: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let h = [
            AF_INET,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
            0,
            0,
            0,
            0,
        ];
        let mut m = MsgBuilder::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL).header(&h);
        m.attr(RTA_GATEWAY, &gateway.octets());
        m.attr_u32(RTA_OIF, index);
        // A container on several networks keeps the default route of the first one.
        match self
            .sock
            .request(m, &format!("add default route via `{gateway}`"))
        {
            Err(e) if e.errno() == Some(Errno::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// The IPv4 routes of the main table.
    pub(crate) fn routes(&mut self) -> Result<Vec<RouteEntry>, NetlinkError> {
        let h = [AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let m = MsgBuilder::new(RTM_GETROUTE, 0).header(&h);
        let payloads = self.sock.dump(m, "list routes")?;
        Ok(payloads.iter().filter_map(|p| parse_route(p)).collect())
    }
}

/// Parses one `rtmsg` answer into a main-table route, skipping other tables.
fn parse_route(p: &[u8]) -> Option<RouteEntry> {
    let (dst_len, table) = (*p.get(1)?, *p.get(4)?);
    if table != RT_TABLE_MAIN {
        return None;
    }
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut oif = None;
    for (kind, value) in AttrIter::new(p.get(12..)?) {
        match kind {
            RTA_DST => dst = Ipv4Addr::from(<[u8; 4]>::try_from(value.get(0..4)?).ok()?),
            RTA_OIF => oif = parse_u32(value),
            _ => {}
        }
    }
    Some(RouteEntry {
        dst: Subnet::new(dst, dst_len).ok()?,
        oif,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_main_table_route() {
        let mut p = vec![AF_INET, 16, 0, 0, RT_TABLE_MAIN, 2, 253, 1, 0, 0, 0, 0];
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&RTA_DST.to_ne_bytes());
        p.extend_from_slice(&[10, 1, 0, 0]);
        p.extend_from_slice(&8u16.to_ne_bytes());
        p.extend_from_slice(&RTA_OIF.to_ne_bytes());
        p.extend_from_slice(&3u32.to_ne_bytes());
        let r = parse_route(&p).unwrap();
        assert_eq!(r.dst.to_string(), "10.1.0.0/16");
        assert_eq!(r.oif, Some(3));
        p[4] = 255;
        assert!(parse_route(&p).is_none());
    }
}
