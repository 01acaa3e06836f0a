//! The kernel operations the store performs, behind one small trait: [`LinuxKernel`]
//! speaks rtnetlink, nfnetlink and /proc/sys; a recording fake (tests only) lets the
//! store's ordering, rollback and recovery logic be checked without root.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::ipam;
use crate::netlink::{MsgBuilder, NetlinkError, Socket};
use crate::netns;
use crate::nft;
use crate::record::{Attachment, Network};
use crate::rtnl::{RouteEntry, Rtnl, VethSpec};
use crate::store::NetError;

/// Host and namespace operations of the store. Every method acts in the network
/// namespace of the calling thread, or in `netns` where it takes one.
pub(crate) trait Kernel: fmt::Debug + Send + Sync {
    /// The IPv4 routes of the main table.
    fn routes(&self) -> Result<Vec<RouteEntry>, NetError>;
    /// The network's bridge: created if missing (fixed MAC), addressed, up, with the
    /// sysctls forwarding and loopback publishing need. Returns its index.
    fn ensure_bridge(&self, network: &Network) -> Result<u32, NetError>;
    /// Creates a veth pair, replacing a leftover host end of the same name.
    fn create_veth(&self, spec: &VethSpec<'_>) -> Result<(), NetError>;
    /// Deletes a link; a missing one is success.
    fn delete_link(&self, name: &str) -> Result<(), NetError>;
    /// The first `ethN` not taken inside `netns`.
    fn free_ifname(&self, netns: BorrowedFd<'_>) -> Result<String, NetError>;
    /// Inside `netns`: `lo` up, address, link up, default route unless `internal`.
    fn configure_inside(
        &self,
        netns: BorrowedFd<'_>,
        a: &Attachment,
        internal: bool,
    ) -> Result<(), NetError>;
    /// Commits an nftables batch; returns the socket when its close should be deferred.
    fn commit_nft(&self, msgs: Vec<MsgBuilder>, what: &str) -> Result<Option<Socket>, NetError>;
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LinuxKernel;

/// Writes `value` to a /proc/sys file.
fn write_sysctl(path: &str, value: &str) -> Result<(), NetError> {
    std::fs::write(path, value).map_err(|source| NetError::Sysctl {
        path: PathBuf::from(path),
        source,
    })
}

fn missing_link(name: &str) -> NetlinkError {
    NetlinkError::Kernel {
        what: format!("find link `{name}`"),
        errno: Errno::ENODEV,
    }
}

/// Brings `lo` up in the calling thread's namespace.
pub(crate) fn loopback_up(rtnl: &mut Rtnl) -> Result<(), NetError> {
    let lo = rtnl.link_index("lo")?.ok_or_else(|| missing_link("lo"))?;
    rtnl.set_up(lo, "lo")?;
    Ok(())
}

impl Kernel for LinuxKernel {
    fn routes(&self) -> Result<Vec<RouteEntry>, NetError> {
        Ok(Rtnl::open()?.routes()?)
    }

    fn ensure_bridge(&self, network: &Network) -> Result<u32, NetError> {
        let mut rtnl = Rtnl::open()?;
        let index = rtnl.ensure_bridge(&network.bridge, ipam::mac_for(network.gateway))?;
        rtnl.add_address(index, network.gateway, network.subnet.prefix())?;
        // Packets DNATed from 127.0.0.1 must be routable out of the bridge.
        let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", network.bridge);
        write_sysctl(&localnet, "1")?;
        if !network.internal {
            write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        }
        Ok(index)
    }

    fn create_veth(&self, spec: &VethSpec<'_>) -> Result<(), NetError> {
        let mut rtnl = Rtnl::open()?;
        match rtnl.create_veth(spec) {
            // A host veth of this name belongs to this container on this network (the
            // name hashes both): a leftover of a `release` whose namespace lived on.
            Err(e)
                if e.errno() == Some(Errno::EEXIST)
                    && rtnl.link_index(spec.host_name)?.is_some() =>
            {
                rtnl.delete_link(spec.host_name)?;
                rtnl.create_veth(spec)?;
            }
            other => other?,
        }
        Ok(())
    }

    fn delete_link(&self, name: &str) -> Result<(), NetError> {
        Ok(Rtnl::open()?.delete_link(name)?)
    }

    fn free_ifname(&self, netns: BorrowedFd<'_>) -> Result<String, NetError> {
        netns::run_in(netns, || -> Result<String, NetError> {
            let names = Rtnl::open()?.link_names()?;
            Ok((0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !names.contains(n))
                .unwrap_or_else(|| "eth0".into()))
        })?
    }

    fn configure_inside(
        &self,
        netns: BorrowedFd<'_>,
        a: &Attachment,
        internal: bool,
    ) -> Result<(), NetError> {
        netns::run_in(netns, || -> Result<(), NetError> {
            let mut rtnl = Rtnl::open()?;
            loopback_up(&mut rtnl)?;
            let index = rtnl
                .link_index(&a.ifname)?
                .ok_or_else(|| missing_link(&a.ifname))?;
            rtnl.add_address(index, a.ip, a.prefix)?;
            rtnl.set_up(index, &a.ifname)?;
            // Internal networks reach nothing beyond their subnet: no default route.
            if !internal {
                rtnl.add_default_route(index, a.gateway)?;
            }
            Ok(())
        })?
    }

    fn commit_nft(&self, msgs: Vec<MsgBuilder>, what: &str) -> Result<Option<Socket>, NetError> {
        Ok(Some(nft::commit(msgs, what)?))
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A kernel that records what it was asked and fails on request.

    use std::sync::Mutex;

    use super::*;

    /// Records one line per call (`op arg`) and fails every call whose line starts
    /// with the armed prefix.
    #[derive(Debug, Default)]
    pub(crate) struct FakeKernel {
        calls: Mutex<Vec<String>>,
        fail_op: Mutex<Option<&'static str>>,
    }

    impl FakeKernel {
        /// From now on, calls starting with `op` fail with EIO.
        pub(crate) fn fail_on(&self, op: Option<&'static str>) {
            *self.fail_op.lock().unwrap() = op;
        }

        /// Returns and forgets the calls recorded so far.
        pub(crate) fn take_calls(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }

        fn record(&self, line: String) -> Result<(), NetError> {
            let armed = *self.fail_op.lock().unwrap();
            let fail = armed.is_some_and(|op| line.starts_with(op));
            self.calls.lock().unwrap().push(line.clone());
            if fail {
                return Err(NetError::Netlink(NetlinkError::Kernel {
                    what: line,
                    errno: Errno::EIO,
                }));
            }
            Ok(())
        }
    }

    impl Kernel for FakeKernel {
        fn routes(&self) -> Result<Vec<RouteEntry>, NetError> {
            self.record("routes".into())?;
            Ok(Vec::new())
        }

        fn ensure_bridge(&self, network: &Network) -> Result<u32, NetError> {
            self.record(format!("ensure_bridge {}", network.bridge))?;
            Ok(7)
        }

        fn create_veth(&self, spec: &VethSpec<'_>) -> Result<(), NetError> {
            self.record(format!("create_veth {}", spec.host_name))
        }

        fn delete_link(&self, name: &str) -> Result<(), NetError> {
            self.record(format!("delete_link {name}"))
        }

        fn free_ifname(&self, _netns: BorrowedFd<'_>) -> Result<String, NetError> {
            self.record("free_ifname".into())?;
            Ok("eth0".into())
        }

        fn configure_inside(
            &self,
            _netns: BorrowedFd<'_>,
            a: &Attachment,
            _internal: bool,
        ) -> Result<(), NetError> {
            self.record(format!("configure_inside {}", a.ip))
        }

        fn commit_nft(
            &self,
            _msgs: Vec<MsgBuilder>,
            what: &str,
        ) -> Result<Option<Socket>, NetError> {
            self.record(format!("commit_nft {what}"))?;
            Ok(None)
        }
    }
}
