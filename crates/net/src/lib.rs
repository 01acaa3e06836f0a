//! berth-net owns container networking on the host: Linux bridges, veth pairs, IP address
//! management persisted under a state dir, NAT and port publishing in an nftables table of
//! berth's own, a small DNS responder for user-defined networks, and the contents of a
//! container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`. It talks to the
//! kernel over netlink only (no `ip`/`nft` processes) and knows nothing of images,
//! container processes or the engine's database: the caller hands it a network namespace
//! fd and a container id.
//!
//! Entry point: [`NetStore::open`], then [`NetStore::create_network`] /
//! [`NetStore::attach`] / [`NetStore::detach`] (or [`NetStore::release`] once the
//! namespace is gone) / [`NetStore::recover`]; [`etc`] renders the `/etc` files and
//! [`dns`] is the per-network responder behind the `berth-netdns` binary.

#![deny(missing_docs)]

mod attach;
pub mod dns;
pub mod etc;
mod firewall;
mod ipam;
mod kernel;
mod netlink;
mod netns;
mod nft;
mod record;
mod rtnl;
mod store;
mod subnet;

pub use attach::{AttachOptions, set_loopback_up};
pub use ipam::IpamError;
pub use netlink::NetlinkError;
pub use netns::NetnsError;
pub use record::{Attachment, Network, PortMapping, Protocol, RecordError};
pub use store::{NetConfig, NetError, NetStore, NetworkCreate, NetworkDetails};
pub use subnet::{Subnet, SubnetError};
